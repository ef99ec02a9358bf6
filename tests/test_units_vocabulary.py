"""One vocabulary of units: every ``Literal`` that names units (``"mgha"``, ``"native"``,
...) is defined in :mod:`microsr.calibration`, and options and records import it from there;
a checkpoint records its units once (:attr:`CheckpointMeta.units`)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

from microsr.calibration import DatasetUnits, InputUnits, OutputUnits, Units, WindowKind
from microsr.checkpoint import CheckpointMeta

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "microsr"
UNIT_NAMES = {"mgha", "native", "grey", "mu", "hu", "legacy"}


def unit_literals(path: Path) -> list[int]:
    """Lines of ``Literal[...]`` subscripts in ``path`` that list a unit name."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) == "Literal":
            names = {c.value for c in ast.walk(node.slice) if isinstance(c, ast.Constant)}
            if names & UNIT_NAMES:
                lines.append(node.lineno)
    return lines


def test_unit_names_are_defined_once_in_calibration():
    found = {
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "calibration.py"
        for line in unit_literals(path)
    }
    # morphometry's threshold kinds ("mgha", "value", ...) and spaces ("density", "grey",
    # "normalised") name where a threshold lives, not the units of values
    spaces = ("morphometry/config.py:", "morphometry/segment.py:")
    assert not {f for f in found if not f.startswith(spaces)}, found


def test_the_option_vocabularies_share_their_names():
    assert set(get_args(DatasetUnits)) <= set(get_args(Units))
    assert set(get_args(WindowKind)) - {"grey"} <= set(get_args(Units))
    assert "mgha" in get_args(InputUnits) and "mgha" in get_args(OutputUnits)


def test_a_checkpoint_records_its_units_once_and_reads_the_old_field():
    base = {"model_config": {"name": "unet"}, "factor": 2, "normalization": {"mode": "minmax"}}
    old = CheckpointMeta.model_validate(base | {"provenance": {"units": "mgha"}})
    assert old.units is not None and old.units.kind == "mgha"
    native = CheckpointMeta.model_validate(base | {"provenance": {"units": "native"}})
    assert native.units is None  # the calibration was not recorded: inputs taken as they are
    grey = {"kind": "grey"}
    new = CheckpointMeta.model_validate(base | {"units": grey, "provenance": {"units": "mgha"}})
    assert new.units.kind == "grey"  # the record wins over the old field
