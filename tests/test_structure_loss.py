"""Structure-aware loss: analytic values, soft skeletons, the derived threshold, training."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from microsr.checkpoint import read_checkpoint
from microsr.cli import app
from microsr.compare.candidates import DEFAULT_CANDIDATES, STRUCTURE_WEIGHT, CompareConfig
from microsr.compare.run import _train_config
from microsr.data.normalize import NormalizationConfig
from microsr.data.prepare import PrepareConfig, prepare_dataset
from microsr.models.factory import ModelConfig
from microsr.morphometry.segment import smooth
from microsr.training.config import TrainConfig
from microsr.training.losses import compute_loss
from microsr.training.structure import (
    StructureTerm,
    gaussian_blur,
    soft_cldice_loss,
    soft_dice_loss,
    soft_fraction,
    soft_segment,
    soft_skeleton,
    structure_loss,
)
from microsr.training.threshold import calibrated_threshold
from microsr.training.train import train

SHARP = StructureTerm(threshold=0.5, tau=1e-3, sigma_vox=0)


def _binary(seed=0, shape=(3, 1, 32, 32)):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < 0.3).float()


def test_soft_fraction_of_a_binary_image_is_its_bone_fraction():
    image = 0.1 + 0.8 * _binary()  # 0.1 / 0.9: far from the threshold in units of tau
    expected = (image > 0.5).float().flatten(1).mean(1)
    torch.testing.assert_close(soft_fraction(soft_segment(image, SHARP)), expected)


def test_soft_dice_is_one_for_identical_and_zero_for_disjoint_masks():
    a = _binary()
    soft = torch.rand(2, 1, 16, 16)
    assert soft_dice_loss(a, a).item() == pytest.approx(0, abs=1e-6)
    assert soft_dice_loss(soft, soft).item() == pytest.approx(0, abs=1e-6)  # soft masks too
    assert soft_dice_loss(a, 1 - a).item() == pytest.approx(1, abs=1e-6)
    empty = torch.zeros(1, 1, 8, 8)
    assert soft_dice_loss(empty, empty).item() == pytest.approx(0, abs=1e-6)


def test_identical_images_cost_nothing_and_disjoint_ones_cost_the_most():
    image = 0.1 + 0.8 * _binary()
    assert structure_loss(image, image, SHARP).item() == pytest.approx(0, abs=1e-5)
    term = SHARP.model_copy(update={"cldice": True})
    assert structure_loss(image, image, term).item() == pytest.approx(0, abs=1e-5)
    # disjoint: Dice loss 1 plus the fraction error |0.3 - 0.7| (roughly)
    flipped = 1 - image
    fraction = (image > 0.5).float().flatten(1).mean(1)
    expected = 1 + (2 * fraction - 1).abs().mean()
    assert structure_loss(image, flipped, SHARP).item() == pytest.approx(expected.item(), 1e-4)


def test_gradient_is_finite_and_nonzero_near_the_threshold():
    term = StructureTerm(threshold=0.4, tau=0.02, sigma_vox=1.2, cldice=True)
    g = torch.Generator().manual_seed(1)
    target = 0.1 + 0.8 * _binary(2)
    image = (0.4 + 0.01 * torch.randn(target.shape, generator=g)).requires_grad_()
    structure_loss(image, target, term).backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().max() > 1e-3
    # far from the threshold, the sigmoid is saturated: no gradient
    far = torch.full_like(target, 0.99).requires_grad_()
    structure_loss(far, target, StructureTerm(threshold=0.4, tau=0.01, sigma_vox=0)).backward()
    assert far.grad.abs().max() < 1e-6


def test_gaussian_blur_is_the_morphometry_smoothing():
    image = torch.rand(2, 1, 20, 17, dtype=torch.float64)
    ours = gaussian_blur(image, 1.2)[:, 0].numpy()
    np.testing.assert_allclose(ours, smooth(image[:, 0].numpy(), 1.2), atol=1e-6)
    assert gaussian_blur(image, 0) is image


def test_soft_skeleton_of_a_thick_bar_is_thin_and_centred():
    bar = torch.zeros(1, 1, 40, 48)
    bar[..., 12:21, 6:42] = 1  # 9 rows thick, centre row 16
    skeleton = soft_skeleton(bar, iterations=10)[0, 0]
    assert skeleton.min() >= 0 and skeleton.max() <= 1 + 1e-6
    assert (skeleton[bar[0, 0] == 0] == 0).all()  # inside the bar
    interior = skeleton[:, 12:36]  # away from the bar's ends
    assert (interior > 0.5).sum(0).max() <= 1  # one pixel thick
    rows = torch.arange(40.0)[:, None]
    centre = (interior * rows).sum() / interior.sum()
    assert centre.item() == pytest.approx(16, abs=1e-6)


def test_cldice_sees_a_broken_bar():
    bar = torch.zeros(1, 1, 32, 48)
    bar[..., 13:18, 4:44] = 1
    broken = bar.clone()
    broken[..., 22:26] = 0  # the bar cut in two: same Dice-scale overlap, broken topology
    assert soft_cldice_loss(bar, bar).item() == pytest.approx(0, abs=1e-6)
    assert soft_cldice_loss(broken, bar).item() > 0.03


def test_compute_loss_adds_the_weighted_structure_term():
    torch.manual_seed(0)
    target = torch.rand(2, 1, 24, 24)
    logits = torch.randn(2, 1, 24, 24)
    term = StructureTerm(threshold=0.5)
    base = compute_loss(logits, target, "l1")
    both = compute_loss(logits, target, "l1", structure=term, structure_weight=0.3)
    extra = 0.3 * structure_loss(torch.sigmoid(logits), target, term)
    torch.testing.assert_close(both, base + extra)
    assert compute_loss(logits, target, "l1", structure=term).item() == base.item()  # weight 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = compute_loss(logits, target, "l1", structure=term, structure_weight=0.3)
    torch.testing.assert_close(low, both)


def test_structure_config_defaults():
    cfg = TrainConfig()  # on (the compare winner), threshold from the data, no clDice
    assert cfg.structure_weight == 0.5 and cfg.structure_threshold is None and not cfg.cldice
    with pytest.raises(ValueError):
        TrainConfig(structure_threshold=1.5)


def _info(norm: dict, calibrations: dict) -> dict:
    """A ``dataset.json`` of one-slice specimens with these calibrations."""
    record = {"n_slices": 1, "n_lr_slices": 1, "crop_yxhw": [0, 0, 1, 1], "hr_slices": [0],
              "lr_t": [0.0], "hr_spacing_mm": [1.0, 1.0, 1.0]}  # fmt: skip
    specimens = {k: record | {"calibration": c} for k, c in calibrations.items()}
    return {"factor": 2, "normalization": norm, "specimens": specimens}


def test_calibrated_threshold_maps_500_mgha_through_the_hr_window():
    norm = {"mode": "window", "low": -200.0, "high": 1800.0}
    cal = {"slope": 2.0, "intercept": -100.0, "units": "mg HA/cm3"}
    # 500 mg HA/cm3 is stored value 300, at (300 + 200) / 2000 of the window
    assert calibrated_threshold(_info(norm, {"a": cal}), ["a"]) == pytest.approx(0.25)
    both = _info(norm, {"a": cal, "b": None})
    assert calibrated_threshold(both, ["a", "b"]) is None  # an uncalibrated specimen: Otsu
    assert calibrated_threshold(_info({"mode": "minmax"}, {"a": cal}), ["a"]) is None


def test_the_structure_threshold_follows_the_one_default_threshold_rule(monkeypatch):
    """``training.threshold.default_morphometry`` is the default rule (500 mg HA/cm3 on
    calibrated data, else Otsu) and the structure term's threshold follows it."""
    from types import SimpleNamespace

    from microsr.morphometry.config import MorphometryConfig
    from microsr.training import threshold

    assert threshold.default_morphometry(True) == MorphometryConfig()
    assert threshold.default_morphometry(False).threshold == "otsu"
    norm = {"mode": "window", "low": -200.0, "high": 1800.0}
    info = _info(norm, {"a": {"slope": 2.0, "intercept": -100.0, "units": "mg HA/cm3"}})
    pairs = SimpleNamespace(specimens=["a"])
    assert threshold.structure_threshold(info, pairs, sigma_vox=1.0) == pytest.approx(0.25)
    rule = MorphometryConfig(threshold_value=700.0)  # stored 400: (400 + 200) / 2000
    monkeypatch.setattr(threshold, "default_morphometry", lambda calibrated: rule)
    assert threshold.structure_threshold(info, pairs, sigma_vox=1.0) == pytest.approx(0.3)


@pytest.fixture
def dataset(pair_manifest, tmp_path):
    return prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)


def test_training_with_a_structure_term_derives_and_records_its_threshold(dataset, tmp_path):
    cfg = TrainConfig(
        model=ModelConfig(width=4, depth=1), epochs=1, batch_size=4, patch=16, seed=3,
        device="cpu", val_max_slices=2, structure_weight=0.5, cldice=True,
    )  # fmt: skip
    result = train(dataset, tmp_path / "run", cfg, progress=False)
    log = pd.read_csv(result.metrics_csv)
    assert np.isfinite(log["train_loss"].dropna()).all()
    hparams = read_checkpoint(result.last)["hyper_parameters"]
    threshold = hparams["data"]["structure_threshold"]
    # uncalibrated phantoms of 100 (marrow) and 1000 (bone): Otsu lies between, in unit range
    info = json.loads((dataset / "dataset.json").read_text())
    norm = NormalizationConfig.model_validate(info["normalization"])
    low, high = norm.hr_window
    assert (100 - low) / (high - low) < threshold < (1000 - low) / (high - low)
    assert hparams["config"]["structure_threshold"] is None  # the request, as given


def test_cli_train_takes_the_structure_options(dataset, tmp_path):
    args = ["train", str(dataset), str(tmp_path / "run"), "--epochs", "1", "--width", "4",
            "--depth", "1", "--patch", "16", "--batch-size", "4", "--device", "cpu",
            "--context", "0", "--structure-weight", "0.2", "--structure-threshold", "0.4",
            "--cldice"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    cfg = read_checkpoint(tmp_path / "run" / "last.ckpt")["microsr"]["train_config"]
    assert cfg["structure_weight"] == 0.2 and cfg["structure_threshold"] == 0.4 and cfg["cldice"]


def test_compare_has_a_structure_candidate_and_passes_its_term_on():
    known = {c.name: c for c in DEFAULT_CANDIDATES}
    structure = known["resunet25d_l1ssim_structure"]
    assert structure.model == known["resunet25d_l1ssim"].model  # the default model and loss
    assert structure.loss == known["resunet25d_l1ssim"].loss == TrainConfig().loss
    cfg = _train_config(structure, CompareConfig())
    assert cfg.structure_weight == STRUCTURE_WEIGHT > 0 and cfg.structure_threshold is None
