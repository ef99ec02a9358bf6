"""The HTML report: built from a synthetic study folder, opened in a headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.ndimage import gaussian_filter
from typer.testing import CliRunner

from microsr.cli import app
from microsr.report import build_report
from microsr.report.bland_altman import OUTLIER_SD, fig_bland_altman
from microsr.report.checks import outside_axes
from microsr.report.html import figure_jobs, load_study
from microsr.stats import add_errors, bland_altman, generalisation_matrix, run_stats, specimen_means

FIGURES = [
    "fig_a_examples",
    "fig_b_specimens",
    "fig_c_bland_altman",
    "fig_d_training",
    "fig_e_generalisation",
]

BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _slices() -> pd.DataFrame:
    """BA/TA differences as in the phantom study (README): LR -0.06 +- 0.04, SR -0.005 +- 0.005.

    LR's differences are eight times SR's: on one shared y-axis scaled to SR's, most LR
    points would fall outside it (issue 24).
    """
    rng = np.random.default_rng(0)
    rows = []
    for model in ("femur", "spine"):
        for i, site in enumerate(("femur", "femur", "spine", "spine")):
            for k in range(8):
                hr = rng.uniform(0.2, 0.35)
                rows.append(
                    {"model": model, "site": site, "specimen": f"{site}{i}", "lr_slice": k}
                    | {"psnr_lr": rng.normal(20, 1), "psnr_sr": rng.normal(25, 1)}
                    | {"ssim_lr": rng.normal(0.5, 0.05), "ssim_sr": rng.normal(0.8, 0.05)}
                    | {"ba_ta_hr": hr, "ba_ta_lr": hr + rng.normal(-0.06, 0.04)}
                    | {"ba_ta_sr": hr + rng.normal(-0.005, 0.005)}
                )
    return pd.DataFrame(rows)


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """A study folder with stats, one example slice and training curves (no training)."""
    study = tmp_path / "study"
    (study / "stats").mkdir(parents=True)
    (study / "study.json").write_text(
        json.dumps(
            {"manifest": "/data/femur_spine.csv", "software": {"numpy": "x"}}
            | {"config": {"train": {"model": {"name": "unet_residual"}}}}
        )
    )
    (study / "problems.json").write_text(json.dumps(["one site had <3 specimens"]))
    slices = _slices()
    own = slices[slices["model"] == slices["site"]]
    for name, frame in run_stats(own).items():
        frame.to_csv(study / "stats" / f"{name}.csv", index=False)
    every = specimen_means(add_errors(slices))
    generalisation_matrix(every).to_csv(study / "stats" / "generalisation.csv", index=False)
    epochs = np.arange(3)
    pd.DataFrame(
        {"epoch": np.tile(epochs, 2), "model": np.repeat(["femur", "spine"], 3)}
        | {
            "train_loss": 0.7 - np.outer([0.1, 0.15], epochs).ravel(),
            "val_loss": np.repeat([0.72, 0.69], 3),
        }
        | {"val_psnr": 20.0 + np.outer([1.0, 1.5], epochs).ravel()}
    ).to_csv(study / "stats" / "training.csv", index=False)
    ev = study / "models" / "femur" / "evaluation"
    ev.mkdir(parents=True)
    yy, xx = np.mgrid[:66, :58]
    hr = ((np.sin(yy / 3.0) * np.cos(xx / 4.0)) > 0.3).astype(np.float32)  # "trabeculae"
    np.savez(
        ev / "femur0_example.npz",
        lr=gaussian_filter(hr, 2.0).astype(np.float16),
        sr=gaussian_filter(hr, 0.7).astype(np.float16),
        hr=hr.astype(np.float16),
        lr_slice=1,
        hr_slice=2,
        scores=np.array([20.0, 25.0, 0.5, 0.8]),
    )
    return study


def test_report_is_self_contained(study_dir):
    index = build_report(study_dir)
    text = index.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 5  # A, B, C, training, generalisation
    assert "<table" in text and "one site had &lt;3 specimens" in text
    assert '"numpy": "x"' in text or "&quot;numpy&quot;: &quot;x&quot;" in text
    figs = {p.name for p in (study_dir / "report" / "figures").iterdir()}
    assert {f"{n}.{ext}" for n in FIGURES for ext in ("png", "pdf")} == figs
    assert (study_dir / "report" / "tables" / "comparisons.csv").is_file()
    assert 'src="figures' not in text  # nothing linked: the page stands alone


def drawn_figures(study: Path) -> dict[str, Figure]:
    """Every figure the report of ``study`` makes, drawn (Agg) as the report draws it."""
    record, _, tables = load_study(study)
    out = {}
    for job in figure_jobs(study, tables, record):
        fig = job.draw()
        FigureCanvasAgg(fig).draw()  # layout done: the limits are the ones saved
        out[job.name] = fig
    return out


def assert_all_data_inside(study: Path) -> dict[str, Figure]:
    """Every point, line, bar, band and image of every figure lies inside its axes."""
    figs = drawn_figures(study)
    for name, fig in figs.items():
        assert outside_axes(fig) == [], name
    return figs


def test_every_figure_shows_all_its_data(study_dir):
    figs = assert_all_data_inside(study_dir)
    assert list(figs) == FIGURES  # and in section order


def test_the_check_sees_hidden_data():
    fig = Figure()
    ax = fig.subplots()
    ax.scatter([0, 1, 2], [0, 1, 5])
    ax.axhline(0.5)
    assert outside_axes(fig) == []
    ax.set_ylim(-1, 2)  # what a y-axis shared with a narrower panel does
    assert len(outside_axes(fig)) == 1  # the scatter; the axhline is still inside
    ax.axhspan(3, 4)
    assert len(outside_axes(fig)) == 2
    ax_img = fig.add_axes((0.6, 0.6, 0.3, 0.3))
    ax_img.imshow(np.zeros((10, 10)))
    assert len(outside_axes(fig)) == 2
    ax_img.set_xlim(2, 6)  # a zoom by limits: part of the image is not shown
    assert len(outside_axes(fig)) == 3


def _lines_at(ax) -> list[float]:
    return sorted(
        float(line.get_ydata()[0])
        for line in ax.lines
        if len(set(line.get_ydata())) == 1 and len(line.get_ydata()) == 2
    )


def _y_span(ax, patch) -> tuple[float, float]:
    verts = patch.get_transform().transform(patch.get_path().vertices)
    y = ax.transData.inverted().transform(verts)[:, 1]
    return float(y.min()), float(y.max())


def test_bland_altman_draws_each_panel_with_its_own_range_lines_and_bands(study_dir):
    slices = pd.read_csv(study_dir / "stats" / "slices.csv")
    fig = fig_bland_altman(slices)
    FigureCanvasAgg(fig).draw()
    lr_ax, sr_ax = fig.axes
    assert not lr_ax.get_shared_y_axes().joined(lr_ax, sr_ax)
    for ax, key in ((lr_ax, "lr"), (sr_ax, "sr")):
        ba = bland_altman(slices[f"ba_ta_{key}"], slices["ba_ta_hr"])
        diff = slices[f"ba_ta_{key}"] - slices["ba_ta_hr"]
        low, high = ax.get_ylim()
        assert low <= min(diff.min(), ba["loa_low_ci_low"], 0) < high
        assert high >= max(diff.max(), ba["loa_high_ci_high"], 0)
        expected = [0.0, ba["bias"], ba["loa_low"], ba["loa_high"]]
        assert np.allclose(_lines_at(ax), sorted(expected))  # zero, bias, both limits
        bands = sorted(_y_span(ax, p) for p in ax.patches)
        cis = sorted(
            (ba[f"{k}_ci_low"], ba[f"{k}_ci_high"]) for k in ("bias", "loa_low", "loa_high")
        )
        assert np.allclose(bands, cis)  # the CI of the bias and of each limit, shaded
        assert ax.collections[0].get_offsets().shape == (len(slices), 2)  # every slice
    # LR's range is wider than SR's: a shared axis would hide LR (issue 24)
    assert np.ptp(lr_ax.get_ylim()) > 4 * np.ptp(sr_ax.get_ylim())
    assert "own y-axis" in fig.get_suptitle()


def test_bland_altman_marks_gross_outliers_on_the_edge_with_a_count():
    rng = np.random.default_rng(3)
    hr = rng.uniform(0.2, 0.3, 400)
    slices = pd.DataFrame({"ba_ta_hr": hr, "ba_ta_lr": hr - 0.05 + rng.normal(0, 0.01, 400)})
    slices["ba_ta_sr"] = hr + rng.normal(0, 0.002, 400)
    slices.loc[:1, "ba_ta_sr"] += 0.5  # two gross outliers, > OUTLIER_SD SDs from the bias
    fig = fig_bland_altman(slices)
    FigureCanvasAgg(fig).draw()
    sr_ax = fig.axes[1]
    ba = bland_altman(slices["ba_ta_sr"], slices["ba_ta_hr"])
    assert ba["bias"] + OUTLIER_SD * ba["sd"] < 0.5
    assert sr_ax.get_ylim()[1] < 0.4  # the outliers do not squash the panel
    marks = sr_ax.collections[1].get_offsets()
    assert len(marks) == 2 and np.allclose(marks[:, 1], sr_ax.get_ylim()[1])
    assert [t.get_text() for t in sr_ax.texts if "clipped" in t.get_text()] == ["2 clipped"]
    assert outside_axes(fig) == []
    assert not [t for t in fig.axes[0].texts if "clipped" in t.get_text()]


def test_report_title_sections_and_labels(study_dir):
    text = build_report(study_dir).read_text(encoding="utf-8")
    assert "<title>microsr study: femur_spine</title>" in text  # from the manifest's name
    heads = re.findall(r"<h2>([A-E])\. ", text)
    assert heads == ["A", "B", "C", "D", "E"]
    assert "bilinear-upsampled" not in text and "LR (bilinear)" not in text
    assert "own y-axis range" in text  # the Bland-Altman caption says so
    figs = drawn_figures(study_dir)
    titles = [ax.get_title() for ax in figs["fig_a_examples"].axes]
    assert any("LR (trilinear)" in t for t in titles)
    assert any("SR (unet_residual)" in t for t in titles)
    record = json.loads((study_dir / "study.json").read_text(encoding="utf-8"))
    (study_dir / "study.json").write_text(json.dumps(record | {"title": "Femur & spine"}))
    assert "<h1>Femur &amp; spine</h1>" in build_report(study_dir).read_text(encoding="utf-8")
    res = CliRunner().invoke(app, ["report", str(study_dir), "--title", "Trial 2"])
    assert res.exit_code == 0, res.output
    assert "<title>Trial 2</title>" in (study_dir / "report" / "index.html").read_text(
        encoding="utf-8"
    )


def test_report_cli_on_a_folder_without_study(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a microsr study folder" in res.output
    assert not (tmp_path / "report").exists()


def test_report_reads_study_json_typed(tmp_path):
    """The report reads ``study.json`` as a :class:`StudyRecord` (its fields, not ``.get``
    chains): a malformed record is an error naming the file, not a crash deep in a page."""
    from microsr.errors import MicrosrError
    from microsr.report.record import StudyRecord

    (tmp_path / "stats").mkdir()
    (tmp_path / "study.json").write_text(json.dumps({"config": ["not", "a", "mapping"]}))
    with pytest.raises(MicrosrError, match=r"study\.json: not a readable study\.json"):
        load_study(tmp_path)
    config = {"folds": 4, "train": {"model": {"name": "rcan"}}}
    (tmp_path / "study.json").write_text(json.dumps({"manifest": "/d/m.csv", "config": config}))
    record = load_study(tmp_path)[0]
    assert isinstance(record, StudyRecord) and record.folds == 4 and record.model_name == "rcan"
    assert StudyRecord().folds is None and StudyRecord().model_name is None


CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.documentElement.setAttribute('data-images-loaded', ok + '/' + imgs.length);
  document.documentElement.setAttribute('data-height', document.body.scrollHeight);
});
</script></body>"""
WIDTH = 1200  # CSS px of the browser window; the report's body is at most 1100 px wide


def artifacts_dir() -> Path:
    """Where a test keeps files for a person to look at: ``$MICROSR_TEST_ARTIFACTS``, else
    ``tests/artifacts/`` (ignored by git)."""
    env = os.environ.get("MICROSR_TEST_ARTIFACTS")
    out = Path(env) if env else Path(__file__).parent / "artifacts"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=180
    )


def test_report_figures_load_in_headless_chromium(study_dir, tmp_path, capsys):
    """All five figures load; the whole page is kept as a screenshot (an artifact)."""
    browser = _browser()
    if browser is None:
        pytest.skip(
            "no Chromium found (/usr/bin/chromium, chromium, chromium-browser, "
            "google-chrome); Debian/Ubuntu: apt-get install chromium"
        )
    index = build_report(study_dir)
    page = tmp_path / "check.html"
    page.write_text(index.read_text(encoding="utf-8").replace("</body>", CHECK), encoding="utf-8")
    out = _chromium(browser, tmp_path / "profile", "--dump-dom", page.as_uri())
    match = re.search(r'data-images-loaded="(\d+)/(\d+)"', out.stdout)
    assert match, f"no marker in the DOM; stderr: {out.stderr[-2000:]}"
    assert match.group(1) == match.group(2) == "5"
    height = int(re.search(r'data-height="(\d+)"', out.stdout).group(1))
    shot = artifacts_dir() / "report_screenshot.png"
    shot.unlink(missing_ok=True)
    size = f"--window-size={WIDTH},{min(height + 40, 16000)}"
    out = _chromium(browser, tmp_path / "profile", size, f"--screenshot={shot}", index.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000, out.stderr[-2000:]
    shutil.copyfile(index, shot.with_name("report_index.html"))
    with capsys.disabled():
        print(f"\nreport screenshot: {shot} ({height} px tall page)")
