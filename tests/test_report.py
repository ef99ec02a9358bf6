"""The HTML report: built from a synthetic study folder, opened in a headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from microsr.cli import app
from microsr.report import build_report
from microsr.stats import add_errors, generalisation_matrix, run_stats, specimen_means

BROWSERS = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def _browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def _slices() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model in ("femur", "spine"):
        for i, site in enumerate(("femur", "femur", "spine", "spine")):
            for k in range(4):
                hr = rng.uniform(0.2, 0.3)
                rows.append(
                    {"model": model, "site": site, "specimen": f"{site}{i}", "lr_slice": k}
                    | {"psnr_lr": rng.normal(20, 1), "psnr_sr": rng.normal(25, 1)}
                    | {"ssim_lr": rng.normal(0.5, 0.05), "ssim_sr": rng.normal(0.8, 0.05)}
                    | {"ba_ta_hr": hr, "ba_ta_lr": hr + 0.05, "ba_ta_sr": hr + 0.01}
                )
    return pd.DataFrame(rows)


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """A study folder with stats, one example slice and training curves (no training)."""
    study = tmp_path / "study"
    (study / "stats").mkdir(parents=True)
    (study / "study.json").write_text(
        json.dumps({"manifest": "m.csv", "config": {"a": 1}, "software": {"numpy": "x"}})
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
        | {"train_loss": 0.7 - 0.1 * np.tile(epochs, 2), "val_loss": 0.71, "val_psnr": 20.0}
    ).to_csv(study / "stats" / "training.csv", index=False)
    ev = study / "models" / "femur" / "evaluation"
    ev.mkdir(parents=True)
    img = np.random.default_rng(1).random((33, 29)).astype(np.float16)
    np.savez(
        ev / "femur0_example.npz",
        lr=img,
        sr=img,
        hr=img,
        lr_slice=1,
        hr_slice=2,
        scores=np.array([20.0, 25.0, 0.5, 0.8]),
    )
    return study


def test_report_is_self_contained(study_dir):
    index = build_report(study_dir)
    text = index.read_text()
    assert text.count("data:image/png;base64,") == 5  # A, B, C, training, generalisation
    assert "<table" in text and "one site had &lt;3 specimens" in text
    assert '"numpy": "x"' in text or "&quot;numpy&quot;: &quot;x&quot;" in text
    figs = {p.name for p in (study_dir / "report" / "figures").iterdir()}
    assert {"fig_a_examples.png", "fig_a_examples.pdf", "fig_generalisation.pdf"} <= figs
    assert (study_dir / "report" / "tables" / "comparisons.csv").is_file()
    assert 'src="figures' not in text  # nothing linked: the page stands alone


def test_report_cli_on_a_folder_without_study(tmp_path):
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not a microsr study folder" in res.output
    assert not (tmp_path / "report").exists()


CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.documentElement.setAttribute('data-images-loaded', ok + '/' + imgs.length);
});
</script></body>"""


def test_report_figures_load_in_headless_chromium(study_dir, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(
            "no Chromium found (/usr/bin/chromium, chromium, chromium-browser, "
            "google-chrome); Debian/Ubuntu: apt-get install chromium"
        )
    page = tmp_path / "check.html"
    page.write_text(build_report(study_dir).read_text().replace("</body>", CHECK))
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    match = re.search(r'data-images-loaded="(\d+)/(\d+)"', out.stdout)
    assert match, f"no marker in the DOM; stderr: {out.stderr[-2000:]}"
    assert match.group(1) == match.group(2) == "5"
