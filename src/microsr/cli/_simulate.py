"""Options shared by ``simulate`` and ``prepare``: reference, shift, randomised acquisitions."""

from __future__ import annotations

from pathlib import Path

from microsr.cli._app import given_options, option_errors
from microsr.errors import MicrosrError


def parse_reference(text: str) -> float | str:
    """``--reference-value``: ``"auto"`` or a number."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise MicrosrError(f"--reference-value {text!r}: give auto or a number") from None


def parse_shift(text: str | None) -> tuple[float, float, float]:
    """``--shift Z,Y,X`` (HR voxels) -> a tuple; None -> no shift."""
    if text is None:
        return (0.0, 0.0, 0.0)
    try:
        parts = tuple(float(p) for p in text.replace(" ", "").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise MicrosrError(f"--shift {text!r}: give three numbers Z,Y,X (HR voxels)")
    return parts  # type: ignore[return-value]


def maybe_randomize(config, randomize: bool, ranges: Path | None, seed: int) -> tuple:
    """``(config, record)``: with ``randomize``, the draw from ``ranges`` seeded by ``seed``."""
    import numpy as np

    from microsr.simulate import draw_acquisition, draw_record

    spans = _ranges(randomize, ranges)
    if not randomize:
        return config, {"randomized": False}
    config = draw_acquisition(spans, config, np.random.default_rng(seed))
    return config, {"randomized": True, "draw": draw_record(config)}


def simulation_config(
    factor: int | None,
    randomize: bool,
    ranges: Path | None,
    seed: int,
    draws: int = 1,
    acquisition: Path | None = None,
):
    """``prepare``'s :class:`~microsr.data.simulated.SimulationConfig` from its options
    (``factor`` None: 2, or the acquisition file's)."""
    from microsr.data.simulated import SimulationConfig
    from microsr.simulate import AcquisitionConfig

    if acquisition is not None:
        file = acquisition_file(
            acquisition, randomize, ranges, factor=factor, option="--simulate-factor"
        )
        with option_errors("--acquisition"):
            return SimulationConfig.from_file(file, randomize=randomize, seed=seed, draws=draws)
    spans = _ranges(randomize, ranges)
    with option_errors():
        acq = AcquisitionConfig(factor=2 if factor is None else factor)
        return SimulationConfig(
            acquisition=acq, randomize=randomize, ranges=spans, seed=seed, draws=draws
        )


def acquisition_file(
    path: Path, randomize: bool, ranges: Path | None, *, factor: int | None = None,
    option: str = "--factor",
):  # fmt: skip
    """Read ``--acquisition FILE``, refusing ``--ranges`` beside it, ``--randomize`` without
    the file's uncertainty and a ``factor`` option that is not the file's."""
    from microsr.simulate.acquisition_file import read_acquisition_file

    file = read_acquisition_file(path)
    if ranges is not None:
        raise MicrosrError(
            "--ranges is not used with --acquisition: --randomize draws within the "
            f"uncertainty of {path}"
        )
    if randomize and file.uncertainty is None:
        raise MicrosrError(
            f"{path}: --randomize draws within the acquisition file's 'uncertainty', which "
            "it does not have"
        )
    if factor is not None and factor != file.acquisition.factor:
        raise MicrosrError(
            f"{option} {factor}: the acquisition file {path} is for factor "
            f"{file.acquisition.factor}; they must agree"
        )
    return file


def refuse_explicit(ctx, options: dict[str, str], path: Path) -> None:
    """Refuse acquisition-setting options given on the command line beside ``--acquisition``
    (``options``: parameter name -> option name); their defaults are ignored."""
    given = given_options(ctx, options)
    if given:
        raise MicrosrError(
            f"{', '.join(given)}: the acquisition settings come from --acquisition {path}; "
            "edit a copy of that file to change them"
        )


def _ranges(randomize: bool, ranges: Path | None):
    """The ``--ranges`` file's :class:`~microsr.simulate.AcquisitionRanges` (default ranges
    without one); ``--ranges`` without ``--randomize`` is an error."""
    from microsr.simulate import AcquisitionRanges, load_ranges

    if ranges is not None and not randomize:
        raise MicrosrError("--ranges is used with --randomize")
    return load_ranges(ranges) if ranges is not None else AcquisitionRanges()
