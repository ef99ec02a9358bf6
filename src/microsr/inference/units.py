"""Density units at prediction: convert, never relabel (:func:`plan_units`).

A checkpoint records the units of its intensity window (:class:`~microsr.calibration.WindowUnits`:
mg HA/cm3, native scanner values with their calibration, or uncalibrated grey values); an
input's units follow from its calibration (:func:`~microsr.calibration.units_of`). Every
conversion between calibrated units is linear through density, so the plan is two linear
maps: the LR's stored values into the model's units before the model runs, and the model's
output into the units written:

* ``output_units="input"`` (default): the input's own units, converted back, written with
  the input's calibration (a Scanco AIM keeps its native values and header, so Scanco tools
  read the densities right);
* ``output_units="mgha"``: mg HA/cm3, written with the identity calibration.

Units that cannot be converted (grey values into a calibrated model or the other way round,
or other density units) are refused, naming both, unless ``input_units`` says what the
input holds (``"mgha"``: its values are mg HA/cm3; ``"model"``: they are already in the
model's units) or ``force`` takes them as the model's units. Checkpoints that record no units:
the input is taken to be in the model's units, as before (logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from microsr.calibration import (
    DENSITY_UNITS,
    InputUnits,
    OutputUnits,
    WindowUnits,
    apply_map,
    linear_map,
    units_of,
)
from microsr.errors import MicrosrError
from microsr.volume import Calibration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnitsPlan:
    """Linear maps ``value -> a * value + b`` around the model, and what the output is.

    Attributes
    ----------
    to_model
        ``(a, b)``: LR stored values -> the model's window units.
    to_output
        ``(a, b)``: the model's output -> the written values.
    calibration
        The written file's calibration (``None``: uncalibrated).
    value_units
        ``metadata["value_units"]`` of the output (``None``: the input's, unchanged).
    label
        The output's units in words (provenance metadata and logs).
    """

    to_model: tuple[float, float] = (1.0, 0.0)
    to_output: tuple[float, float] = (1.0, 0.0)
    calibration: Calibration | None = None
    value_units: str | None = None
    label: str = "the model's units"


def _inverse(ab: tuple[float, float]) -> tuple[float, float]:
    a, b = ab
    return 1.0 / a, -b / a


def _declared(
    given: WindowUnits, model: WindowUnits, input_units: InputUnits, force: bool, name: str
) -> WindowUnits:
    """The input's units after ``input_units`` / ``force`` (see the module notes)."""
    if input_units == "model":
        return model
    source = WindowUnits(kind="mgha") if input_units == "mgha" else given
    if linear_map(source, model) is not None:
        return source
    text = (
        f"{name}: the input holds {source.describe()} and the model was trained on "
        f"{model.describe()}; these cannot be converted into each other"
    )
    if not force:
        hint = (
            ""
            if input_units == "mgha"
            else "--input-units mgha if the input's values are mg HA/cm3, "
        )
        raise MicrosrError(
            f"{text}. Give {hint}--input-units model if they are already in the model's units, "
            "or --force"
        )
    log.warning("%s; --force: its values are taken as the model's units", text)
    return model


def plan_units(
    calibration: Calibration | None,
    metadata: dict,
    model: WindowUnits | None,
    *,
    input_units: InputUnits = "auto",
    output_units: OutputUnits = "input",
    force: bool = False,
    name: str = "input",
) -> UnitsPlan:
    """The :class:`UnitsPlan` for an input with ``calibration`` and a model in ``model`` units.

    Raises
    ------
    MicrosrError
        Unreconcilable units (without ``input_units`` or ``force``); ``output_units="mgha"``
        when neither the model nor the input is calibrated.
    """
    given = units_of(calibration, metadata)
    if model is None:
        log.info(
            "%s: the checkpoint records no units; the input (%s) is taken to be in the "
            "model's units", name, given.describe(),
        )  # fmt: skip
        model = given if input_units != "mgha" else WindowUnits(kind="mgha")
    source = _declared(given, model, input_units, force, name)
    to_model = linear_map(source, model) or (1.0, 0.0)
    if to_model != (1.0, 0.0):
        log.info(
            "%s: converted from %s into the model's %s (value * %.6g %+.6g)",
            name, source.describe(), model.describe(), *to_model,
        )  # fmt: skip
    if output_units == "mgha":
        if not model.calibrated:
            raise MicrosrError(
                f"{name}: --output-units mgha needs density units, but the model works in "
                f"{model.describe()} (give --input-units mgha if the input holds mg HA/cm3)"
            )
        cal = model.calibration()
        return UnitsPlan(
            to_model, (cal.slope, cal.intercept), Calibration(1.0, 0.0, model.units),  # type: ignore[union-attr]
            "mgha", model.units,
        )  # fmt: skip
    keep = source == given  # the input's own header describes the written values
    out_cal = calibration if keep else source.calibration()
    value_units = None if keep else ("mgha" if source.kind == "mgha" else "native")
    return UnitsPlan(to_model, _inverse(to_model), out_cal, value_units, source.describe())


def output_metadata(metadata: dict, plan: UnitsPlan) -> dict:
    """The input's metadata with the output's ``value_units`` and the units in words."""
    out = {**metadata, "microsr_units": plan.label}
    if plan.value_units is not None:
        out["value_units"] = plan.value_units
    if plan.value_units == "mgha":
        out.pop("scanco", None)  # the header's calibration no longer describes the values
    return out


__all__ = ["DENSITY_UNITS", "UnitsPlan", "apply_map", "output_metadata", "plan_units"]
