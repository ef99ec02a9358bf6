"""Acquisition files (``--acquisition FILE``): round trip, checks, draws, simulate, prepare."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_pair
from typer.testing import CliRunner

from microsr.cli import app
from microsr.data.prepare import PrepareConfig, load_dataset_info, prepare_dataset
from microsr.data.simulated import SimulationConfig
from microsr.errors import InputFileError, MicrosrError
from microsr.io import read_volume, write_volume
from microsr.simulate import AcquisitionConfig
from microsr.simulate.acquisition_file import (
    ACQUISITION_VERSION,
    AcquisitionFile,
    AcquisitionUncertainty,
    FilterMatch,
    draw_within_uncertainty,
    read_acquisition_file,
    write_acquisition_file,
)

runner = CliRunner()
FITTED = AcquisitionConfig(
    filter_name="hann", photons=800.0, projections_ratio=0.6, psf_sigma_bins=1.0
)
UNC = AcquisitionUncertainty(photons=0.2, psf_sigma_bins=0.1, projections_ratio=0.05)


def _file(**kw) -> AcquisitionFile:
    return AcquisitionFile(**{"acquisition": FITTED, "uncertainty": UNC, "fit": {"nps": [1.0, 0.5]},
                              **kw})  # fmt: skip


def test_round_trip(tmp_path):
    original = _file()
    path = write_acquisition_file(original, tmp_path / "acq.json")
    again = read_acquisition_file(path)
    assert again == original and again.record() == original.record()
    data = json.loads(path.read_text())
    assert data["format"] == "microsr-acquisition" and data["version"] == ACQUISITION_VERSION == 2
    assert data["acquisition"]["filter_name"] == "hann" and data["uncertainty"]["photons"] == 0.2
    bare = read_acquisition_file(write_acquisition_file(FITTED, tmp_path / "bare.json"))
    assert bare.acquisition == FITTED and bare.uncertainty is None and bare.fit is None
    assert not list(tmp_path.glob(".microsr-tmp*"))


def test_version_1_files_are_read_as_they_are(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"format": "microsr-acquisition", "version": 1,
                                "acquisition": {"filter_name": "hann"},
                                "uncertainty": {"photons": 0.2}}))  # fmt: skip
    old = read_acquisition_file(path)
    assert old.version == 1 and old.uncertainty.filters == {}
    assert old.acquisition.filter_name == "hann"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not an acquisition file"),
        ('{"format": "microsr-ranges", "version": 1}', "not an acquisition file"),
        ('{"format": "microsr-acquisition", "version": 3, "acquisition": {}}', "newer"),
        ('{"format": "microsr-acquisition", "version": "1", "acquisition": {}}', "integer"),
        ('{"format": "microsr-acquisition", "version": 1}', "acquisition: Field required"),
        ('{"format": "microsr-acquisition", "version": 1, "acquisition": {"photons": -5}}',
         "photons must be > 0"),
        ('{"format": "microsr-acquisition", "version": 1, "acquisition": {"photon": 5}}',
         "acquisition.photon"),
        ('{"format": "microsr-acquisition", "version": 1, "acquisition": {},'
         ' "uncertainty": {"photons": -1}}', "uncertainty.photons"),
        ('{"format": "microsr-acquisition", "version": 2, "acquisition": {},'
         ' "uncertainty": {"filters": {"butterworth": {"photons": 5, "psf_sigma_bins": 0}}}}',
         "uncertainty.filters"),
        ('{"format": "microsr-acquisition", "version": 2, "acquisition": {},'
         ' "uncertainty": {"filters": {"ramp": {"photons": 0, "psf_sigma_bins": 0}}}}',
         "uncertainty.filters.ramp.photons"),
    ],
)  # fmt: skip
def test_bad_files_are_one_message_naming_the_file(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputFileError, match=match) as info:
        read_acquisition_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(InputFileError, match="cannot read"):
        read_acquisition_file(tmp_path / "missing.json")


def test_draws_are_around_the_fit_seeded_and_valid():
    file = _file()
    draws = [draw_within_uncertainty(file, np.random.default_rng(s)) for s in range(400)]
    photons = np.log([d.photons for d in draws])
    assert abs(np.median(photons) - np.log(800.0)) < 0.05
    assert 0.15 < np.std(photons) < 0.25  # log sigma = sqrt(log(1 + 0.2^2)) = 0.198
    psf = np.array([d.psf_sigma_bins for d in draws])
    assert abs(psf.mean() - 1.0) < 0.03 and 0.07 < psf.std() < 0.13
    ratio = np.array([d.projections_ratio for d in draws])
    assert abs(ratio.mean() - 0.6) < 0.02 and (ratio > 0).all()
    assert all(d.filter_name == "hann" and d.factor == 2 for d in draws)
    assert len({d.seed for d in draws}) > 390
    assert draw_within_uncertainty(file, np.random.default_rng(3)) == draws[3]
    wide = AcquisitionFile(
        acquisition=FITTED,
        uncertainty=AcquisitionUncertainty(psf_sigma_bins=5.0, projections_ratio=5.0),
    )
    for s in range(50):  # clipped to valid settings
        d = draw_within_uncertainty(wide, np.random.default_rng(s))
        assert d.psf_sigma_bins >= 0 and d.projections_ratio >= 0.02 and d.photons == 800.0
    with pytest.raises(MicrosrError, match="uncertainty"):
        draw_within_uncertainty(AcquisitionFile(acquisition=FITTED), np.random.default_rng(0))


def test_draws_choose_among_the_consistent_filters_each_around_its_own_match():
    filters = {"hann": FilterMatch(photons=800.0, psf_sigma_bins=1.0),
               "hamming": FilterMatch(photons=2e4, psf_sigma_bins=3.0)}  # fmt: skip
    two = _file(uncertainty=UNC.model_copy(update={"filters": filters}))
    draws = [draw_within_uncertainty(two, np.random.default_rng(s)) for s in range(200)]
    names = [d.filter_name for d in draws]
    assert set(names) == {"hann", "hamming"} and 70 < names.count("hamming") < 130
    for name, match in filters.items():
        mine = [d for d in draws if d.filter_name == name]
        assert abs(np.median(np.log([d.photons for d in mine])) - np.log(match.photons)) < 0.1
        assert abs(np.mean([d.psf_sigma_bins for d in mine]) - match.psf_sigma_bins) < 0.05
    one = _file(uncertainty=UNC.model_copy(update={"filters": {"hann": filters["hann"]}}))
    # one filter: nothing drawn, so the other settings are the same draws as without
    for s in range(5):
        rng = np.random.default_rng(s)
        assert draw_within_uncertainty(one, rng) == draw_within_uncertainty(
            _file(), np.random.default_rng(s)
        )


def _hr(tmp_path):
    _, hr = make_pair(0, shape=(8, 40, 40))
    return write_volume(hr, tmp_path / "hr.mha")


def test_simulate_with_the_file_equals_the_explicit_settings(tmp_path):
    hr = _hr(tmp_path)
    acq = write_acquisition_file(_file(), tmp_path / "acq.json")
    res = runner.invoke(app, ["simulate", str(hr), str(tmp_path / "a.mha"), "--acquisition",
                              str(acq), "--seed", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["simulate", str(hr), str(tmp_path / "b.mha"), "--filter", "hann",
                              "--photons", "800", "--projections-ratio", "0.6",
                              "--psf-sigma", "1.0", "--seed", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    a, b = read_volume(tmp_path / "a.mha"), read_volume(tmp_path / "b.mha")
    np.testing.assert_array_equal(a.array, b.array)
    res = runner.invoke(app, ["simulate", str(hr), str(tmp_path / "c.mha"), "--acquisition",
                              str(acq), "--randomize", "--seed", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads(next(line for line in res.output.splitlines() if line.startswith("{")))
    assert record["randomized"] and record["draw"]["photons"] != 800.0
    assert record["draw"]["filter_name"] == "hann"


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--photons", "100"], "--photons: the acquisition settings come from"),
        (["--filter", "ramp", "--psf-sigma", "0"], "--filter, --psf-sigma"),
        (["--factor", "3"], "--factor 3: the acquisition file"),
        (["--randomize", "--ranges", "r.json"], "--ranges is not used with --acquisition"),
        (["--randomize", "BARE"], "uncertainty"),
    ],
)
def test_simulate_refuses_conflicting_options(tmp_path, extra, match):
    hr = _hr(tmp_path)
    acq = write_acquisition_file(_file(), tmp_path / "acq.json")
    if "BARE" in extra:
        acq, extra = write_acquisition_file(FITTED, tmp_path / "bare.json"), extra[:1]
    args = ["simulate", str(hr), str(tmp_path / "o.mha"), "--acquisition", str(acq), *extra]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and match in res.output, res.output
    assert not (tmp_path / "o.mha").exists()
    res = runner.invoke(app, [*args[:5], "--factor", "2"])  # the file's factor is accepted
    assert res.exit_code == 0, res.output


def _manifest(tmp_path, n=4):
    rows = ["specimen,site,lr_path,hr_path"]
    for i in range(n):
        _, hr = make_pair(i, shape=(8, 40, 40))
        write_volume(hr, tmp_path / f"s{i}_hr.mha")
        rows.append(f"s{i},femur,,s{i}_hr.mha")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "manifest.csv"


def test_prepare_records_the_file_and_draws_within_it(tmp_path):
    manifest = _manifest(tmp_path)
    acq = write_acquisition_file(_file(), tmp_path / "acq.json")
    res = runner.invoke(app, ["prepare", str(manifest), str(tmp_path / "ds"), "--roi", "32",
                              "--acquisition", str(acq)])  # fmt: skip
    assert res.exit_code == 0, res.output
    info = load_dataset_info(tmp_path / "ds")[0]
    assert info.acquisition_file == _file().record()
    rec = info.specimens["s1"].simulated
    assert rec["acquisition"]["photons"] == 800.0 and rec["acquisition"]["filter_name"] == "hann"
    args = ["prepare", str(manifest), str(tmp_path / "dr"), "--roi", "32", "--acquisition",
            str(acq), "--randomize", "--draws", "2"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    info = load_dataset_info(tmp_path / "dr")[0]
    drawn = [s.simulated for s in info.specimens.values()]
    assert all(d["randomized"] and d["acquisition"]["filter_name"] == "hann" for d in drawn)
    assert len({d["acquisition"]["photons"] for d in drawn}) == 4
    assert any(d["draws"] for d in drawn)  # training specimens got a second draw


def test_prepare_refuses_a_factor_the_file_does_not_have(tmp_path):
    manifest = _manifest(tmp_path, n=2)
    acq = write_acquisition_file(_file(), tmp_path / "acq.json")
    res = runner.invoke(app, ["prepare", str(manifest), str(tmp_path / "ds"), "--acquisition",
                              str(acq), "--simulate-factor", "3"])  # fmt: skip
    assert res.exit_code == 2 and "--simulate-factor 3" in res.output
    assert not (tmp_path / "ds").exists()


def test_simulation_config_from_file_is_consistent():
    sim = SimulationConfig.from_file(_file(), randomize=True, seed=2)
    assert sim.acquisition == FITTED
    with pytest.raises(ValueError, match="acquisition file's"):
        SimulationConfig(acquisition=AcquisitionConfig(), acquisition_file=_file())
    with pytest.raises(ValueError, match="uncertainty"):
        SimulationConfig.from_file(AcquisitionFile(acquisition=FITTED), randomize=True)
    cfg = PrepareConfig(simulation=sim)
    assert PrepareConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_demo_pairs_dataset_and_checkpoint_record_the_file(tmp_path):
    from microsr.data.prepare_config import file_prepare_config
    from microsr.data.simulated import SimulationConfig, simulate_pairs
    from microsr.models.factory import ModelConfig
    from microsr.training.config import TrainConfig
    from microsr.training.train import train

    specimens = [(f"s{i}", "femur", make_pair(i, shape=(8, 40, 40))[1]) for i in range(4)]
    file = _file()
    manifest = simulate_pairs(
        specimens, tmp_path / "data", SimulationConfig.from_file(file, seed=5)
    )
    records = json.loads((tmp_path / "data/acquisitions.json").read_text())
    assert {r["acquisition"]["photons"] for r in records.values()} == {800.0}
    assert read_acquisition_file(tmp_path / "data/acquisition_file.json") == file
    cfg = file_prepare_config(PrepareConfig(roi=32), file)
    ds = prepare_dataset(manifest, tmp_path / "ds", cfg, progress=False)
    assert load_dataset_info(ds)[0].acquisition_file == file.record()
    tiny = TrainConfig(model=ModelConfig(width=4, depth=1), epochs=1, batch_size=4, patch=16,
                       seed=0, device="cpu", val_max_slices=1)  # fmt: skip
    result = train(ds, tmp_path / "run", tiny, progress=False)
    from microsr.checkpoint import parse_checkpoint

    meta, _ = parse_checkpoint(result.last)
    assert meta.provenance["acquisition_file"] == file.record()
    drawn = simulate_pairs(
        specimens[:2], tmp_path / "d2", SimulationConfig.from_file(file, seed=5, randomize=True)
    )
    records = json.loads((drawn.parent / "acquisitions.json").read_text())
    assert all(r["randomized"] and r["acquisition"]["photons"] != 800.0 for r in records.values())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["demo", "{o}/demo", "--acquisition", "{bare}", "--randomize"], "uncertainty"),
        (["compare", "{o}/cmp", "--dataset", "{o}", "--acquisition", "{acq}"], "--dataset"),
        (["study-demo", "{o}/st", "--acquisition", "{o}/none.json"], "cannot read"),
    ],
)
def test_demo_commands_check_the_file_first(tmp_path, args, match):
    acq = write_acquisition_file(_file(), tmp_path / "acq.json")
    bare = write_acquisition_file(FITTED, tmp_path / "bare.json")
    args = [a.format(o=tmp_path, acq=acq, bare=bare) for a in args]
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and match in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acq.json", "bare.json"]
