"""Entry point of the ``edgewise`` command.

Each command group lives in its own module under ``edgewise.cli`` and exposes
``register(app)``. Errors a user can act on (:class:`EdgewiseError`) become one line
on stderr and exit code 2, whichever command raised them.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import click
import typer
from typer.core import TyperGroup

from edgewise.errors import EdgewiseError

# On a shared or small host OpenMP's default busy-wait makes multi-threaded inference stall
# (mobilenet_v2 p95 4 s instead of 0.14 s at 2 threads under load); children inherit this.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Modules under edgewise.cli that register commands, in --help order.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "models",
    "forecast",
    "plan",
    "profile",
    "serve",
    "rollout",
    "simulate",
    "retrain",
    "report",
    "bench",
    "kb",
    "monitor",
)


# Exceptions that carry the CLI's own control flow (--help, usage errors, Ctrl-C):
# Typer vendors its own click, so both families are listed.
_CONTROL_FLOW: tuple[type[BaseException], ...] = (
    typer.Exit,
    typer.Abort,
    typer.exceptions.TyperException,
    click.exceptions.ClickException,
    click.exceptions.Exit,
    click.exceptions.Abort,
)


_debug_flag = False  # set by the root callback from --debug, once per invocation


# A wrong option, value or command: one line and exit code 2, like every other bad input.
_USAGE_ERRORS: tuple[type[BaseException], ...] = (
    click.exceptions.UsageError,
    next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"),
)


def _debug_requested() -> bool:
    return _debug_flag or os.environ.get("EDGEWISE_DEBUG", "") not in ("", "0")


class EdgewiseGroup(TyperGroup):
    """Typer group that turns every failure into one line on stderr and an exit code.

    :class:`EdgewiseError` (the user can act on it) exits with its ``exit_code``;
    anything else is a fault of the environment or a bug: one line naming the exception,
    exit code 1. ``edgewise --debug ...`` (or ``EDGEWISE_DEBUG=1``) shows the traceback.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except EdgewiseError as err:
            if _debug_requested():
                raise
            typer.echo(f"edgewise: error: {err}", err=True)
            ctx.exit(err.exit_code)
        except _USAGE_ERRORS as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # a bare group: its help
                raise
            usage: Any = err  # click's or Typer's vendored UsageError: same interface
            where = usage.ctx.command_path if usage.ctx is not None else "edgewise"
            message = " ".join(usage.format_message().split())
            typer.echo(f"edgewise: error: {where}: {message}", err=True)
            ctx.exit(2)
        except _CONTROL_FLOW:
            raise
        except Exception as err:
            if _debug_requested():
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            detail = f": {first}" if first else ""
            typer.echo(
                f"edgewise: error: {type(err).__name__}{detail} (rerun with --debug for the traceback)",
                err=True,
            )
            ctx.exit(1)


def _set_up_logging(verbose: bool) -> None:
    """Keep the terminal to edgewise's own lines unless ``--verbose`` (for one invocation).

    Ray's and Serve's log lines and Python warnings go to the log file that
    :func:`edgewise.rayenv.log_path` names; the Ray adapter re-applies this after it
    imports Ray, whose import installs its own terminal handler.
    """
    from edgewise.rayenv import route_logs

    route_logs(verbose=verbose)


def make_app(modules: Sequence[str] = COMMAND_MODULES) -> typer.Typer:
    """Build the Typer app with the given command modules registered."""
    app = typer.Typer(
        cls=EdgewiseGroup,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        help="edgewise: interference-aware, SLO-bound resource management for DL services.",
    )

    @app.callback()
    def _root(
        debug: bool = typer.Option(
            False, "--debug", help="Show the full traceback of a failure instead of one line."
        ),
        verbose: bool = typer.Option(
            False,
            "--verbose",
            help="Show Ray's and Serve's log lines and third-party warnings on the terminal "
            "instead of only in $EDGEWISE_HOME/logs/edgewise.log.",
        ),
    ) -> None:
        """edgewise: profile interference, serve under an SLO at least cost, retrain at the edge."""
        global _debug_flag
        _debug_flag = debug
        _set_up_logging(verbose)

    for name in modules:
        module = importlib.import_module(f"edgewise.cli.{name}")
        module.register(app)
    return app


app = make_app()


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM (``timeout``, systemd, Kubernetes) stops a command the way Ctrl-C does."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point.

    SIGTERM is turned into :class:`KeyboardInterrupt` in the main thread, so every long
    command (profile, capacity, serve, replay, retrain, bench) runs the same clean-up
    for both signals: records end ``interrupted``, stressors and children are stopped.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    app(args=args, prog_name="edgewise")


if __name__ == "__main__":
    main()
