"""Log configuration for the served programs: uvicorn's text format, or one JSON object a line.

``log_config(fmt)`` is a ``logging.config.dictConfig`` dictionary for the application's
loggers and uvicorn's (``uvicorn.error`` and the ``uvicorn.access`` request log); with
``fmt="json"`` every record becomes ``{"time", "level", "logger", "message", ...extra}``.
Records carry what the code put in them: request lines (method, path, status), never headers,
so a bearer token never reaches the log.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMATS: tuple[str, ...] = ("text", "json")


def checked_format(value: str, setting: str) -> str:
    """``value`` when it is a known log format; else a ValueError naming the option and
    ``setting`` (the environment variable), for the settings' validators and the CLIs."""
    if value not in FORMATS:
        raise ValueError(
            f"log format (--log-format, {setting}) must be 'text' or 'json', not {value!r}"
        )
    return value


# attributes every LogRecord has: what is left over was passed as ``extra``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the message
}
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, RFC 3339), level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # uvicorn's request log: (client, method, path with query, HTTP version, status)
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            out.update(zip(_ACCESS_FIELDS, args, strict=True))
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class StdHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler writing to whatever ``sys.stderr`` (or ``sys.stdout``) is at each record, so
    a command run in-process (tests, a CLI runner that swaps the streams) logs where it
    should and never into a stream closed since."""

    def __init__(self, which: str = "stderr") -> None:
        super().__init__()
        self.which = which

    @property
    def stream(self) -> Any:
        return getattr(sys, self.which)

    @stream.setter
    def stream(self, _value: Any) -> None:  # StreamHandler.__init__ assigns one: ignored
        return


def log_config(fmt: str = "text", level: str = "INFO") -> dict[str, Any]:
    """The dictConfig for ``fmt`` ("text": uvicorn's own format; "json"): the root logger
    and uvicorn's loggers on stderr, the request log on stdout (as uvicorn does)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "json":
        default: dict[str, Any] = {"()": "service.logs.JsonFormatter"}
        access: dict[str, Any] = {"()": "service.logs.JsonFormatter"}
    else:
        default = {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s"}
        access = {
            "()": "uvicorn.logging.AccessFormatter",
            "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": default, "access": access},
        "handlers": {
            "default": {"()": "service.logs.StdHandler", "formatter": "default"},
            "access": {
                "()": "service.logs.StdHandler",
                "formatter": "access",
                "which": "stdout",
            },
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "level": level, "propagate": False},
            # one line per page a harvest fetches: the request log of the node says it already
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def configure(fmt: str = "text", level: str = "INFO") -> None:
    """Configure logging for a command that runs without uvicorn (a one-shot harvest)."""
    logging.config.dictConfig(log_config(fmt, level))


__all__ = [
    "FORMATS",
    "checked_format",
    "JsonFormatter",
    "LogFormat",
    "StdHandler",
    "configure",
    "log_config",
]
