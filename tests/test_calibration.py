"""Density units (native, mu, HU, mg HA/cm3) and the info/convert commands."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from typer.testing import CliRunner

from microsr.calibration import (
    check_threshold_units,
    describe_volume,
    hu_to_native,
    to_units,
    with_calibration,
)
from microsr.cli import app
from microsr.errors import MicrosrError
from microsr.io import read_volume, write_volume
from microsr.volume import Calibration, Volume

MU_SCALING, MU_WATER, SLOPE, INTERCEPT = 4096.0, 0.2409, 1603.51904, -391.209015
CAL = Calibration(SLOPE / MU_SCALING, INTERCEPT, "mg HA/cm3", MU_SCALING, MU_WATER)
RAW = np.array([0, 987, 4096, 12000, -35], np.int16).reshape(1, 1, 5)


def raw_volume(calibration=CAL) -> Volume:
    return Volume(RAW, (0.01, 0.01, 0.01), calibration=calibration, metadata={"source": "r.aim"})


def test_scanco_convention_by_hand():
    # Scanco: mu = v / MuScaling; HU = 1000 (mu - mu_w) / mu_w; rho = slope v / MuScaling + b
    v = RAW.astype(np.float64)
    np.testing.assert_allclose(to_units(raw_volume(), "mu").array, v / 4096, rtol=1e-6)
    hu = 1000 * (v / 4096 - MU_WATER) / MU_WATER
    np.testing.assert_allclose(to_units(raw_volume(), "hu").array, hu, rtol=1e-6, atol=1e-3)
    rho = SLOPE * v / 4096 + INTERCEPT
    np.testing.assert_allclose(to_units(raw_volume(), "mgha").array, rho, rtol=1e-6, atol=1e-3)
    assert to_units(raw_volume(), "hu").array[0, 0, 2] == pytest.approx(
        1000 * (1 - MU_WATER) / MU_WATER, rel=1e-6
    )  # v = MuScaling is mu = 1/cm
    np.testing.assert_allclose(hu_to_native(hu, mu_scaling=4096, mu_water=MU_WATER), v, atol=1e-9)


@pytest.mark.parametrize("units", ["mu", "hu", "mgha"])
def test_converted_calibration_still_gives_the_same_density(units):
    converted = to_units(raw_volume(), units)
    density = CAL.apply(RAW)
    np.testing.assert_allclose(
        converted.calibration.apply(converted.array), density, rtol=1e-5, atol=1e-2
    )
    assert converted.metadata["value_units"] == units
    assert to_units(converted, units) is converted


def test_native_and_mu_hu_need_native_values():
    converted = to_units(raw_volume(), "mgha")
    with pytest.raises(MicrosrError, match="native"):
        to_units(converted, "native")
    with pytest.raises(MicrosrError, match="unknown units"):
        to_units(raw_volume(), "kelvin")


def test_user_calibration_for_other_scanners():
    volume = with_calibration(raw_volume(None), 0.5, -100.0)
    np.testing.assert_allclose(to_units(volume, "mgha").array, 0.5 * RAW - 100.0)
    with pytest.raises(MicrosrError, match="non-zero"):
        with_calibration(raw_volume(None), 0.0, 1.0)


def test_threshold_on_uncalibrated_volume_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert check_threshold_units(raw_volume(), 500.0) is True
        assert caplog.text == ""
        assert check_threshold_units(raw_volume(None), 500.0, name="spec1") is False
    assert "spec1" in caplog.text and "500 mg HA/cm3" in caplog.text


def test_describe_volume_keys():
    info = describe_volume(raw_volume())
    assert info["shape"] == [1, 1, 5] and info["dtype"] == "int16"
    assert info["spacing_mm"] == [0.01, 0.01, 0.01]
    assert info["value_range"] == [-35.0, 12000.0]
    assert set(info["calibration"]) >= {"mu_scaling", "mu_water", "slope", "intercept", "units"}
    assert describe_volume(raw_volume(None))["calibration"] is None


def test_cli_info_json_and_convert(tmp_path):
    src = write_volume(raw_volume(), tmp_path / "r.aim")
    runner = CliRunner()
    res = runner.invoke(app, ["info", str(src), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["calibration"]["mu_scaling"] == MU_SCALING and info["shape"] == [1, 1, 5]
    res = runner.invoke(app, ["convert", str(src), str(tmp_path / "d.mha"), "--units", "mgha"])
    assert res.exit_code == 0, res.output
    out = read_volume(tmp_path / "d.mha")
    np.testing.assert_allclose(out.array, CAL.apply(RAW), rtol=1e-6, atol=1e-3)
    assert out.calibration == Calibration(1.0, 0.0, "mg HA/cm3")


def test_cli_convert_uncalibrated_to_density_fails_and_writes_nothing(tmp_path):
    src = write_volume(raw_volume(None), tmp_path / "u.mha")
    res = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "o.nii"), "--units", "mgha"])
    assert res.exit_code == 2
    assert "u.mha" in res.output and "no density calibration" in res.output
    assert not (tmp_path / "o.nii").exists()
    res = CliRunner().invoke(
        app,
        ["convert", str(src), str(tmp_path / "o.nii"), "--units", "mgha", "--slope", "2"],
    )
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(read_volume(tmp_path / "o.nii").array, 2.0 * RAW)


def test_info_shows_the_calibration_as_the_scanco_header_states_it(tmp_path):
    src = write_volume(raw_volume(), tmp_path / "r.aim")
    runner = CliRunner()
    info = json.loads(runner.invoke(app, ["info", str(src), "--json"]).stdout)
    header = info["scanco_header"]
    assert header["RescaleSlope"] == pytest.approx(SLOPE, rel=1e-6)  # per 1/cm, not per integer
    assert header["RescaleIntercept"] == pytest.approx(INTERCEPT, rel=1e-6)
    assert header["MuScaling"] == MU_SCALING and header["MuWater"] == pytest.approx(MU_WATER)
    assert header["slope_units"] == "mg HA/cm3 per 1/cm"
    assert info["calibration"]["slope_units"] == "mg HA/cm3 per native integer"
    res = runner.invoke(app, ["info", str(src)])
    assert res.exit_code == 0, res.output
    lines = {line.split()[0]: line.split(maxsplit=1)[1] for line in res.stdout.splitlines()}
    assert lines["RescaleSlope"] == "1603.519 mg HA/cm3 per 1/cm"
    assert lines["RescaleIntercept"] == "-391.209 mg HA/cm3"
    assert lines["MuScaling"] == "4096" and lines["MuWater"] == "0.2409 1/cm"
    assert f"{SLOPE / MU_SCALING:.7g} * value" in res.stdout and "per native integer" in res.stdout


def test_info_of_converted_or_uncalibrated_volumes_states_no_scanco_header():
    mgha = describe_volume(to_units(raw_volume(), "mgha"))
    assert "scanco_header" not in mgha
    assert mgha["calibration"]["slope_units"] == "mg HA/cm3 per mg HA/cm3"
    assert "scanco_header" not in describe_volume(raw_volume(None))
