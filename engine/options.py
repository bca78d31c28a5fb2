"""What the command line accepts: checked numbers, and the options every command takes.

A number is checked where it is parsed, with the valid range in the message, so a zero poll
interval (hundreds of PollForJobs a second, throttled and billed) or zero effect threads never
reach the worker. The global options (--db, --log-format...) are accepted before or after the
command, as users type them, and every command's --help lists them.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from engine import defaults, logs


class Seconds(click.types.FloatParamType):
    """A finite number of seconds above a minimum (excluded) or from it (included)."""

    name = "seconds"

    def __init__(self, minimum: float = 0.0, *, inclusive: bool = False) -> None:
        self.minimum = minimum
        self.inclusive = inclusive

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                number = math.nan
        low = number >= self.minimum if self.inclusive else number > self.minimum
        if not (math.isfinite(number) and low):
            bound = "at least" if self.inclusive else "more than"
            self.fail(f"must be a number of seconds {bound} {self.minimum:g}, not {value!r}"
                      if not math.isfinite(number) else
                      f"must be {bound} {self.minimum:g} seconds, not {value}", param, ctx)
        return number


class Count(click.types.IntParamType):
    """A whole number from a minimum, up to an optional maximum."""

    name = "integer"

    def __init__(self, minimum: int = 1, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> int:
        try:
            number = value if isinstance(value, int) and not isinstance(value, bool) \
                else int(str(value).strip())
        except ValueError:
            self.fail(f"must be a whole number, not {value!r}", param, ctx)
        if number < self.minimum:
            self.fail(f"must be at least {self.minimum}, not {value}", param, ctx)
        if self.maximum is not None and number > self.maximum:
            self.fail(f"must be at most {self.maximum}, not {value}", param, ctx)
        return number


INTERVAL = Seconds()
"""Intervals, timeouts, budgets: more than 0 s."""
GRACE = Seconds(inclusive=True)
"""Waits that may be skipped: 0 s or more."""
COUNT = Count()


def _global_specs() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("--db", {"env": "DB", "default": defaults.DB_URL,
                  "help": "State database (SQLAlchemy URL)."}),
        ("--sqlite-synchronous", {
            "env": "SQLITE_SYNCHRONOUS", "default": defaults.SQLITE_SYNCHRONOUS,
            "type": click.Choice(["OFF", "NORMAL", "FULL", "EXTRA"], case_sensitive=False),
            "help": "SQLite durability: FULL survives a power cut, NORMAL only a crashed "
                    "process."}),
        ("--log-format", {"env": "LOG_FORMAT", "default": "text",
                          "type": click.Choice(["text", "json"]),
                          "help": "Log lines as text or as JSON objects."}),
        ("--log-level", {"env": "LOG_LEVEL", "default": "INFO",
                         "type": click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"],
                                              case_sensitive=False),
                         "help": "Least severity logged; DEBUG shows the detail behind a "
                                 "one-line error."}),
    ]


GLOBAL_NAMES = [name for name, _ in _global_specs()]

_GIVEN: weakref.WeakSet[click.Command] = weakref.WeakSet()
"""Commands that have the global options already."""


def group_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The global options on the group (before the command), with defaults and variables."""
    for name, spec in reversed(_global_specs()):
        spec = dict(spec)
        env = spec.pop("env")
        command = click.option(name, envvar=f"CPWORKER_{env}", show_envvar=True,
                               show_default=True, **spec)(command)
    return command


def _after_command(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option given after the command overrides what the group read; its variable
    was read by the group already, so only the command line counts here."""
    if value is None or param.name is None:
        return
    if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
        return
    root = ctx.find_root()
    if not isinstance(root.obj, dict):
        return
    root.obj[param.name] = value
    if param.name in ("log_format", "log_level"):
        logs.setup(root.obj["log_format"], root.obj["log_level"])


def add_global_options(command: click.Command) -> click.Command:
    """Give `command` the global options too (once): accepted after it, listed in its help."""
    if command in _GIVEN:
        return command
    for name, spec in _global_specs():
        option = click.Option(
            [name], default=None, expose_value=False, callback=_after_command,
            type=spec.get("type"), envvar=f"CPWORKER_{spec['env']}", show_envvar=True,
            help=f"{spec['help']} Also accepted before the command.")
        command.params.append(option)
    _GIVEN.add(command)
    return command
