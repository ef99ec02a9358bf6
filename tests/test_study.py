"""The study command: a tiny two-site study end to end, resume, and its bad-input paths."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from typer.testing import CliRunner

from microsr.cli import app
from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.data.prepare import PrepareConfig
from microsr.data.splits import Splits, read_splits
from microsr.io import write_volume
from microsr.models.factory import ModelConfig
from microsr.report.checks import outside_axes
from microsr.report.html import figure_jobs, load_study
from microsr.simulate import AcquisitionConfig, make_phantom, simulate_acquisition
from microsr.study import StudyConfig, StudyLayout, run_study
from microsr.study.analysis import write_stats
from microsr.training.config import TrainConfig

TINY_TRAIN = TrainConfig(
    model=ModelConfig(width=4, depth=2), epochs=1, patch=16, batch_size=4, seed=0, device="cpu"
)


def _tiny_manifest(tmp: Path, *, uncalibrated: str | None = None) -> Path:
    """Two sites x 3 phantoms (8, 40, 40) at 10 um, quick 20 um LR; one may lack calibration."""
    rows = []
    for site in ("femur", "spine"):
        for i in range(3):
            sid = f"{site}{i}"
            hr = make_phantom((8, 40, 40), spacing_mm=0.01, site=site, seed=i)
            lr = simulate_acquisition(hr, AcquisitionConfig(quick=True, seed=i))
            if sid == uncalibrated:
                hr, lr = replace(hr, calibration=None), replace(lr, calibration=None)
            rows.append(
                SpecimenRow(
                    sid,
                    site,
                    write_volume(lr, tmp / f"{sid}_lr.mha"),
                    write_volume(hr, tmp / f"{sid}_hr.mha"),
                )
            )
    splits = {"train": ["femur0", "spine0"], "val": ["femur1", "spine1"]}
    (tmp / "splits.json").write_text(json.dumps(splits | {"test": ["femur2", "spine2"]}))
    return write_manifest(rows, tmp / "manifest.csv")


@pytest.mark.slow
def test_tiny_study_end_to_end_and_resume(tmp_path):
    manifest = _tiny_manifest(tmp_path, uncalibrated="spine2")
    config = StudyConfig(
        prepare=PrepareConfig(roi=32, split_file=tmp_path / "splits.json"),
        train=TINY_TRAIN,
        features_3d=False,
        device="cpu",
    )
    out = tmp_path / "study"
    summary = run_study(manifest, out, config, progress=False)
    assert summary["models"] == ["femur", "pooled", "spine"]
    # the uncalibrated specimen: a clear problem, no crash, its PSNR/SSIM still scored
    assert any("spine2" in p and "mg HA/cm3" in p for p in summary["problems"])
    gen = pd.read_csv(out / "stats" / "generalisation.csv")
    assert len(gen) == 6 and set(gen["site"]) == {"femur", "spine"}
    slices = pd.read_csv(out / "stats" / "slices.csv")
    assert set(slices["specimen"]) == {"femur2", "spine2"}
    assert slices.loc[slices["specimen"] == "spine2", "ba_ta_sr"].isna().all()
    assert slices.loc[slices["specimen"] == "femur2", "ba_ta_hr"].between(0, 1).all()
    assert slices["psnr_sr"].notna().all()
    assert (out / "report" / "index.html").is_file()
    assert "<title>microsr study: " in (out / "report" / "index.html").read_text(encoding="utf-8")
    # every figure of this real (tiny) study's report shows all of its data (issue 24)
    record, _, tables = load_study(out)
    jobs = figure_jobs(out, tables, record)
    assert [j.name[4] for j in jobs] == ["a", "b", "c", "d", "e"]
    for job in jobs:
        fig = job.draw()
        FigureCanvasAgg(fig).draw()
        assert outside_axes(fig) == [], job.name
    # resume: nothing is trained or predicted again
    ckpt = out / "models" / "femur" / "run" / "best.ckpt"
    stamp = (
        ckpt.stat().st_mtime_ns,
        (out / "models/femur/predictions/femur2_sr.mha").stat().st_mtime_ns,
    )
    res = CliRunner().invoke(
        app,
        ["study", str(manifest), str(out), "--config", str(_config_file(out))]
        + ["--title", "Tiny femur & spine study"],
    )
    assert res.exit_code == 0, res.output
    assert (
        json.loads((out / "study.json").read_text(encoding="utf-8"))["title"]
        == "Tiny femur & spine study"
    )
    assert "<h1>Tiny femur &amp; spine study</h1>" in (out / "report" / "index.html").read_text(
        encoding="utf-8"
    )
    assert stamp == (
        ckpt.stat().st_mtime_ns,
        (out / "models/femur/predictions/femur2_sr.mha").stat().st_mtime_ns,
    )
    # another config in the same folder: a clear error
    res = CliRunner().invoke(app, ["study", str(manifest), str(out), "--epochs", "3"])
    assert res.exit_code == 2 and "another config" in res.output


def _config_file(study: Path) -> Path:
    path = study.parent / "config.json"
    path.write_text(
        json.dumps(json.loads((study / "study.json").read_text(encoding="utf-8"))["config"])
    )
    return path


def _fake_evaluation(layout: StudyLayout, model: str, sid: str, site: str, n: int) -> None:
    folder = layout.model(model) / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(sid) + n)
    pd.DataFrame(
        {"model": model, "specimen": sid, "site": site, "lr_slice": range(n), "hr_slice": range(n)}
        | {c: rng.random(n) for c in ("psnr_lr", "psnr_sr", "ssim_lr", "ssim_sr")}
        | {c: rng.random(n) for c in ("ba_ta_lr", "ba_ta_sr", "ba_ta_hr")}
    ).to_csv(folder / f"{sid}.csv", index=False)
    (folder / f"{sid}.json").write_text(json.dumps({"problems": []}))


def test_single_site_study_has_no_generalisation_matrix(tmp_path):
    layout = StudyLayout(tmp_path)
    for i, n in enumerate((5, 1)):  # a specimen with a single slice: no CI, no crash
        _fake_evaluation(layout, "femur", f"f{i}", "femur", n)
    summary = write_stats(layout, [])
    assert any("one site only (femur)" in p for p in summary["problems"])
    assert not (tmp_path / "stats" / "generalisation.csv").exists()
    spec = pd.read_csv(tmp_path / "stats" / "specimens.csv")
    assert spec.loc[spec["specimen"] == "f1", "note"].str.contains("fewer than 2").all()
    assert json.loads(layout.problems.read_text(encoding="utf-8")) == summary["problems"]


def test_site_with_too_few_specimens_is_a_clear_problem(tmp_path):
    from microsr.errors import MicrosrError
    from microsr.study.models import model_names, model_splits

    sites = {"a": "femur", "b": "femur", "c": "femur", "d": "spine"}
    splits = Splits(train=["a", "d"], val=["b"], test=["c"])
    assert model_names(sites, pooled=True) == ["femur", "spine", "pooled"]
    with pytest.raises(MicrosrError, match="'spine': no val specimen"):
        model_splits(splits, sites, "spine")
    assert model_splits(splits, sites, "pooled") == splits


def test_acquisition_manifest_pairs_each_bone_with_every_protocol(tmp_path):
    """Frames experiment data: one row per bone x protocol, sites = protocols, shared splits."""
    from microsr.data.manifest import read_manifest
    from microsr.data.prepare import PrepareConfig, prepare_dataset
    from microsr.simulate import AcquisitionConfig, make_phantom
    from microsr.study.acquisitions import FRAMES_PROTOCOLS, acquisition_manifest

    bones = [
        (f"b{i}", "femur", make_phantom((8, 32, 32), spacing_mm=0.01, site="femur", seed=i))
        for i in range(4)
    ]
    manifest = acquisition_manifest(
        bones, tmp_path / "data", FRAMES_PROTOCOLS, base=AcquisitionConfig(quick=True)
    )
    rows = read_manifest(manifest)
    assert sorted(r.site for r in rows) == ["1frame"] * 4 + ["3frames"] * 4 + ["random"] * 4
    assert {r.extra["subject"] for r in rows} == {"b0", "b1", "b2", "b3"}
    one = {r.extra["subject"]: r for r in rows if r.site == "1frame"}
    three = {r.extra["subject"]: r for r in rows if r.site == "3frames"}
    assert one["b0"].hr_path == three["b0"].hr_path  # one HR per bone
    from microsr.io import read_volume

    hr = read_volume(one["b0"].hr_path).array
    err1 = np.std(read_volume(one["b0"].lr_path).array - hr[::2, ::2, ::2])
    err3 = np.std(read_volume(three["b0"].lr_path).array - hr[::2, ::2, ::2])
    assert err3 < err1  # 3 frames: less noise
    prepare_dataset(manifest, tmp_path / "ds", PrepareConfig(roi=24))
    splits = read_splits(tmp_path / "ds/splits.json")
    where = {sid: k for k in ("train", "val", "test") for sid in splits[k]}
    assert all(
        where[f"b{i}_1frame"] == where[f"b{i}_3frames"] == where[f"b{i}_random"] for i in range(4)
    )


def test_study_state_is_read_from_study_json_typed(tmp_path):
    """``study.json`` reads as a ``StudyRecord`` (written again: the same text) that decides
    whether a run resumes the study; the run's state is one ``StudyRun`` object."""
    from microsr.data.normalize import NormalizationConfig
    from microsr.errors import MicrosrError
    from microsr.report.record import StudyRecord
    from microsr.study.models import model_names
    from microsr.study.single import StudyRun, start_study

    layout, manifest = StudyLayout(tmp_path / "st"), tmp_path / "m.csv"
    start_study(layout, manifest, StudyConfig(), title="Trial")
    text = layout.study_json.read_text()
    record = StudyRecord.read(layout.study_json)
    assert json.dumps(record.to_json(), indent=2) == text
    assert record.title == "Trial" and record.manifest == str(manifest.resolve())
    assert StudyConfig.model_validate(record.config) == StudyConfig()
    assert record.same_config(StudyRecord(config=record.config | {"device": "cpu"}))
    assert not record.same_config(StudyRecord(config=record.config | {"pooled": False}))
    older = StudyRecord(config={k: v for k, v in record.config.items() if k != "folds"})
    assert older.same_config(record)  # an option newer than the study, unset: resumes
    assert not older.same_config(StudyRecord(config=record.config | {"folds": 3}))
    layout.study_json.write_text("{")
    with pytest.raises(MicrosrError, match="study.json"):
        StudyRecord.read(layout.study_json)

    rows = [SpecimenRow(f"s{i}", site, Path("l.mha"), Path("h.mha"))
            for i, site in enumerate(["femur", "femur", "spine"])]  # fmt: skip
    norm = NormalizationConfig(mode="window", low=0.0, high=1.0)
    run = StudyRun(layout, StudyConfig(), rows, {"train": [], "val": [], "test": []}, norm)
    assert run.sites == {"s0": "femur", "s1": "femur", "s2": "spine"} and run.problems == []
    assert run.models == model_names(run.sites, pooled=True) and "pooled" in run.models
