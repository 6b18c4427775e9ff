"""Node settings (env prefix ``NODE_``): where the node home is and where to listen."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class NodeSettings(BaseSettings):
    """``NODE_HOME``, ``NODE_HOST``, ``NODE_PORT``."""

    model_config = SettingsConfigDict(env_prefix="NODE_")

    home: Path = Path("node-home")
    host: str = "127.0.0.1"
    port: int = 8080
