"""The Typer app, shared options and the error handling of every subcommand."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Collection
from contextlib import contextmanager
from typing import Annotated

import typer

from microsr.errors import MicrosrError
from microsr.io.atomic import WRITE_ERRORS
from microsr.runtime import set_omp_passive

# Before torch is imported (every subcommand imports it lazily): idle OpenMP threads sleep
# instead of spinning on CPUs that other processes (or our I/O threads) need.
set_omp_passive()

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Super-resolution of microCT bone scans (LR -> HR-like), with the scores to prove it.",
)
log = logging.getLogger("microsr")

Spacing = Annotated[
    str | None,
    typer.Option(
        help="voxel size in mm: one number (isotropic) or z,y,x; "
        "required for files that store none (TIFF)"
    ),
]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda")]
Threads = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="CPU threads (default 0: the CPUs this process may use, i.e. its affinity "
        "capped by the cgroup quota; give N per process when running several)",
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        help="replace an existing output file, or write into a non-empty folder (only the "
        "files this command writes are replaced)"
    ),
]


Mgha = Annotated[
    float | None, typer.Option(help="bone threshold in mg HA/cm3, calibrated data (default 500)")
]
Grey = Annotated[float | None, typer.Option("--threshold", help="bone threshold as a grey value")]
Frac = Annotated[
    float | None, typer.Option(help="bone threshold as a fraction of the per-slice min-max range")
]
Otsu = Annotated[bool, typer.Option("--otsu", help="Otsu's threshold of the (HR) scan")]


def morph_config(mgha=None, grey=None, fraction=None, otsu=False, **fields):
    """A MorphometryConfig from the threshold options, or ``None`` if none was given.

    ``None`` leaves the default to the library (500 mg HA/cm3 on calibrated data, else
    Otsu); ``fields`` (e.g. ``sigma_vox``, ``ta``) override MorphometryConfig's defaults.
    """
    from microsr.morphometry import MorphometryConfig

    options = (("mgha", mgha), ("value", grey), ("fraction", fraction))
    given = [(k, v) for k, v in options if v is not None] + ([("otsu", None)] if otsu else [])
    if len(given) > 1:
        raise MicrosrError(
            "give one of --threshold-mgha, --threshold, --threshold-fraction, --otsu"
        )
    if not given and not fields:
        return None
    kind, value = given[0] if given else ("mgha", 500.0)
    with option_errors():
        return MorphometryConfig(threshold=kind, threshold_value=value, **fields)


def use_threads(threads: int | None, *, io_threads: int = 0, ranks: int = 1) -> int:
    """Apply ``--threads`` (:func:`microsr.runtime.configure_threads`) before any work.

    ``io_threads`` background threads and ``ranks`` processes on this machine share the
    budget; returns the torch threads set (per process).
    """
    from microsr.runtime import configure_threads, cpu_budget

    budget = threads or cpu_budget()
    return configure_threads(max(1, budget // max(1, ranks)), io_threads=io_threads)


def parse_pair(text: str, option: str) -> tuple[float, float]:
    """``"LOW,HIGH"`` -> (low, high); one clear error naming the option otherwise."""
    try:
        low, high = (float(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        raise MicrosrError(f"{option} {text!r}: give two numbers LOW,HIGH") from None
    return low, high


def parse_spacing(text: str | None) -> float | tuple[float, float, float] | None:
    """``--spacing`` text (:func:`microsr.io.files.parse_spacing`, imported on use so that
    ``microsr --help`` loads no readers)."""
    from microsr.io.files import parse_spacing as parse

    return parse(text)


def given_options(ctx, options: dict[str, str]) -> list[str]:
    """The options of ``options`` (parameter name -> option name) given on the command
    line of ``ctx`` (a ``typer.Context``), not left at their default."""
    sources = {name: ctx.get_parameter_source(name) for name in options}
    return [options[n] for n, src in sources.items() if src is not None and src.name != "DEFAULT"]


def given_values(ctx, values: dict) -> dict:
    """The entries of ``values`` (parameter name -> value) given on the command line of
    ``ctx`` (a ``typer.Context``), not left at their default."""
    given = set(given_options(ctx, {name: name for name in values}))
    return {name: value for name, value in values.items() if name in given}


def config_options(model, *, skip: Collection[str] = ()):
    """Decorate a command with one option per field of the pydantic ``model`` (but ``skip``),
    after the command's own parameters; the command takes them as ``**fields``.

    Each option is ``--field-name`` (or its :data:`OPTION_NAMES` name), typed as the field
    (``X | None``: optional; ``bool``: ``--x/--no-x``; ``Literal``: its choices), defaults to
    the field's default, and takes its help from the field's description: the config is the
    one place where an option is defined, so ``--help`` cannot drift from it.
    """

    def decorate(fn):
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=field.default,
                annotation=Annotated[
                    field.annotation,
                    typer.Option(*OPTION_NAMES.get(name, "").split(), help=field.description),
                ],
            )
            for name, field in model.model_fields.items()
            if name not in skip
        ]
        fn.__signature__ = signature.replace(parameters=[*own, *added])
        return fn

    return decorate


#: Config fields whose command-line option has another name.
OPTION_NAMES = {
    "tolerance_lr_voxels": "--tolerance",
    "split_file": "--splits",
    "register_lr": "--register",
    "in_channels": "--context",
    "num_workers": "--workers",
    "max_minutes": "--max-minutes",
    "lr": "--learning-rate",
    "sigma_vox": "--sigma",
}


@contextmanager
def option_errors(name: str | None = None):
    """Turn a pydantic ``ValidationError`` raised while building a config from options into
    one ``MicrosrError`` naming the option (``name``, else the option of the failing field)."""
    from pydantic import ValidationError

    try:
        yield
    except ValidationError as exc:
        err = exc.errors()[0]
        fields = [str(p) for p in err["loc"] if not str(p).isdigit()]
        field = fields[-1] if fields else ""
        label = name or OPTION_NAMES.get(field) or ("--" + field.replace("_", "-") if field else "")
        message = str(err["msg"]).removeprefix("Value error, ")
        given = err.get("input")
        if field and isinstance(given, str | int | float) and not isinstance(given, bool):
            label = f"{label} {given!r}"
        raise MicrosrError(f"{label}: {message}" if label else message) from None


#: ``--debug`` given: show tracebacks instead of one-line messages.
_STATE = {"debug": False}


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def command(fn):
    """Register a subcommand whose failures are one message, not a traceback.

    A :class:`MicrosrError` (bad input) or an ``OSError`` naming a file (unreadable,
    unwritable, disk full) exits with code 2; anything else is a bug: a one-line
    message and exit code 1, with the traceback only under ``microsr --debug``.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise _fail("interrupted", 130) from None
        except Exception as exc:
            if _STATE["debug"]:
                raise
            if isinstance(exc, MicrosrError):
                raise _fail(str(exc), 2) from None
            if isinstance(exc, OSError) and exc.filename is not None:
                raise _fail(f"{exc.filename}: {exc.strerror or exc}", 2) from None
            if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:  # disk full, read-only
                raise _fail(f"{WRITE_ERRORS[exc.errno]} ({exc}); nothing was written", 2) from None
            raise _fail(
                f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the "
                "traceback and please report it",
                1,
            ) from None

    return app.command()(wrapper)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="show Python tracebacks (for bug reports)")
    ] = False,
) -> None:
    _STATE["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
