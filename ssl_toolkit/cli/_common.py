"""The Typer app, its sub-apps, and the error handling every command shares.

Commands are shims: parse options, call one library function. Heavy imports
(torch, librosa, pyroomacoustics) go inside command bodies so ``ssl --help``
answers instantly.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def _flags_show_no_type() -> None:
    """Typer's rich help (0.16 and later) writes a flag as ``--force <bool>``, which reads as
    an option taking a value (users type ``--force true``); show flags bare, as click does."""
    from typer.core import TyperOption

    typed = getattr(TyperOption, "display_type_rich", None)
    if typed is None or getattr(typed, "_ssl_bare_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else typed(self, ctx)

    display_type_rich._ssl_bare_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()

app = typer.Typer(
    name="ssl",
    help="Multi-source sound source localization with multi-hypothesis networks (rMCL).\n\n"
    "Stages: prep -> train -> eval/baseline -> export -> predict -> report. "
    "`ssl demo` runs them all on a small synthetic set.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
prep_app = typer.Typer(
    help="Make scenes (synthesize or import) and features.", no_args_is_help=True
)
app.add_typer(prep_app, name="prep")


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"ssl-toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    threads: int = typer.Option(
        None,
        "--threads",
        help="CPU threads of torch, fixed (default: SSL_THREADS, else OMP_NUM_THREADS, else "
        "the cores this process may use, given back while other processes keep them busy, "
        "so a shared machine does not collapse throughput).",
    ),
) -> None:
    """Multi-source sound source localization with multi-hypothesis networks (rMCL)."""
    if threads is not None:
        from ..core.cpu import configure

        try:
            configure(threads)
        except Exception as e:  # ConfigError: a one-line message
            raise typer.BadParameter(str(e), param_hint="--threads") from None


def shown(value: Any) -> str:
    """A config default as ``--help`` shows it (``show_default=shown(...)``): lists
    comma-joined, booleans on/off, None as "none". A test checks every option's shown
    default against its config dataclass, so help and code cannot drift."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == "":
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def interrupted(command: str) -> str:
    """What an interrupted ``command`` (e.g. ``ssl baseline``) says it left behind: outputs
    are built atomically, and ``ssl train`` keeps its resumable state."""
    line = (f"interrupted: {command} stopped; no incomplete artifact was left (outputs are "
            "renamed into place only when complete)")  # fmt: skip
    if command.endswith(" train"):
        line += "; the run's resumable state was kept (the last finished epoch): rerun the "
        line += "same command with --resume to continue"
    elif command.endswith(" predict"):
        line = (f"interrupted: {command} stopped; the result files already complete were "
                "kept, none is half-written")  # fmt: skip
    return line


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _sigterm_as_interrupt() -> None:
    """SIGTERM (a job scheduler, ``kill``) cleans up like Ctrl-C: partial outputs are
    removed, a training keeps its resumable state."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _fail(message: str) -> typer.Exit:
    """Print ``error: message`` as one red line; the Exit(1) to raise."""
    from rich.markup import escape

    from ..core.console import err

    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _command_name(fn: Callable[..., Any]) -> str:
    """``ssl train`` for ``cli.train.train_cmd``, ``ssl prep import`` for ``cli.prep.import_``
    (the command functions are named after their command)."""
    name = fn.__name__.removesuffix("_cmd").rstrip("_")
    group = " prep" if fn.__module__.endswith(".prep") else ""
    return f"ssl{group} {name}"


def user_errors(fn: F) -> F:
    """Turn UserError (bad input/options) into one red line and exit code 1.

    So does an OS error about a path (it names the file: a name too long, a component that
    is a file, a symbolic link loop, a missing parent, a full or read-only disk, ...), for
    every stage at once: ``PATH: what is wrong``. An OS error that names no file, and any
    other exception, is a bug and keeps its traceback.
    """

    command = _command_name(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ..core.errors import UserError, path_error_line

        _sigterm_as_interrupt()
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            raise _fail(str(e)) from None
        except (OSError, RuntimeError) as e:
            line = path_error_line(e)
            if line is None:
                raise
            raise _fail(line) from None
        except KeyboardInterrupt:
            print(interrupted(command), file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
