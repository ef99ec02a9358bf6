"""Options shared by ``simulate`` and ``prepare``: reference, shift, randomised acquisitions."""

from __future__ import annotations

from pathlib import Path

from microsr.cli._app import option_errors
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


def simulation_config(factor: int, randomize: bool, ranges: Path | None, seed: int, draws: int = 1):
    """``prepare``'s :class:`~microsr.data.simulated.SimulationConfig` from its options."""
    from microsr.data.simulated import SimulationConfig
    from microsr.simulate import AcquisitionConfig

    spans = _ranges(randomize, ranges)
    with option_errors():
        acquisition = AcquisitionConfig(factor=factor)
        return SimulationConfig(
            acquisition=acquisition, randomize=randomize, ranges=spans, seed=seed, draws=draws
        )


def _ranges(randomize: bool, ranges: Path | None):
    """The ``--ranges`` file's :class:`~microsr.simulate.AcquisitionRanges` (default ranges
    without one); ``--ranges`` without ``--randomize`` is an error."""
    from microsr.simulate import AcquisitionRanges, load_ranges

    if ranges is not None and not randomize:
        raise MicrosrError("--ranges is used with --randomize")
    return load_ranges(ranges) if ranges is not None else AcquisitionRanges()
