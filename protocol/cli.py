"""What the three command-line programs share: the package's version (and their `--version`
option), and a configuration mistake reported as one line on stderr with exit status 2
(never a traceback)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

if TYPE_CHECKING:  # (typer is the programs' own import: this module is imported by them)
    import typer

__all__ = [
    "CONFIG_EXIT",
    "PACKAGE",
    "add_version_option",
    "config_exit",
    "package_version",
    "settings_message",
]

PACKAGE = "biobank-federation"
CONFIG_EXIT = 2  # the exit status of every configuration mistake


def package_version() -> str:
    """The installed version of the ``biobank-federation`` distribution."""
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown (the package is not installed)"


def add_version_option(app: typer.Typer, program: str) -> None:
    """`program --version`: print the program's name and the package's version, and exit
    (the option of `app`'s callback)."""
    import typer

    def show(value: bool) -> None:
        if value:
            typer.echo(f"{program} {package_version()}")
            raise typer.Exit()

    def _options(version: bool = False) -> None:
        pass

    # (an object, not this module's string annotation: typer reads it where typer is unknown)
    _options.__annotations__["version"] = Annotated[
        bool,
        typer.Option("--version", callback=show, is_eager=True, help="print the version and exit"),
    ]
    app.callback()(_options)


def settings_message(errors: Iterable[Mapping[str, Any]], prefix: str) -> str:
    """One line from pydantic's ``ValidationError.errors()``: each setting by its environment
    name (``prefix`` + field, upper case) and what is wrong; values are never echoed (a
    token or a database password may be among them)."""
    parts = []
    for error in errors:
        name = prefix + "_".join(str(p) for p in error.get("loc", ())).upper()
        reason = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(reason if name in reason else f"{name}: {reason[:1].lower()}{reason[1:]}")
    # a reason that names its command-line option too already says what to fix
    named_option = all("--" in part for part in parts)
    return "; ".join(parts) + ("" if named_option else " (fix the environment variable)")


def config_exit(message: str) -> NoReturn:
    """Print ``error: MESSAGE`` as one line on stderr and exit with status 2."""
    line = " ".join(message.split())
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    raise SystemExit(CONFIG_EXIT)
