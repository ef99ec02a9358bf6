"""Training-time noise augmentation: CT-textured noise of a drawn level on the LR input."""

from __future__ import annotations

import pytest
import torch

from microsr.training.noise import add_noise, ct_noise


def _radial_power(noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean power spectrum of ``(N, H, W)`` noise and each rfft bin's radial frequency."""
    h, w = noise.shape[-2:]
    power = torch.fft.rfft2(noise).abs().pow(2).mean(0)
    rho = torch.sqrt(torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.rfftfreq(w)[None, :] ** 2)
    return power, rho


def test_ct_noise_has_unit_std_a_ramp_spectrum_and_the_lr_cut_off():
    torch.manual_seed(0)
    noise = ct_noise((400, 64, 64), factor=2)
    std = noise.std(dim=(-2, -1))
    torch.testing.assert_close(std, torch.ones_like(std))
    power, rho = _radial_power(noise)
    # Nothing above the LR Nyquist frequency (0.25 cycles per pixel at factor 2).
    assert power[rho > 0.25].max() < 1e-6 * power.max()
    # Power grows like |rho| below it: the band 0.15-0.2 over 0.05-0.1 is ~ 0.175 / 0.075.
    high = power[(rho > 0.15) & (rho < 0.2)].mean()
    low = power[(rho > 0.05) & (rho < 0.1)].mean()
    assert high / low == pytest.approx(0.175 / 0.075, rel=0.1)
    assert power[0, 0] < 1e-6 * power.max()  # zero mean: intensities are not shifted


@pytest.mark.parametrize("name", ["ramp", "shepp-logan", "cosine", "hamming", "hann"])
def test_the_noise_texture_uses_scikit_images_fbp_filters(name):
    """The windows of :mod:`microsr.simulate.noise_texture` against scikit-image's own
    ``iradon`` filters (``skimage.transform.radon_transform._get_fourier_filter``, 0.24:
    the filters the simulator reconstructs with), relative to its ramp; a fine grid, as the
    windows are written in their continuous form."""
    import numpy as np
    from skimage.transform.radon_transform import _get_fourier_filter

    from microsr.simulate.noise_texture import fbp_noise_power, filter_window

    size = 2048
    freq = np.fft.fftfreq(size)[1 : size // 2]
    theirs = (_get_fourier_filter(size, name) / _get_fourier_filter(size, "ramp"))[:, 0]
    np.testing.assert_allclose(filter_window(freq, name), theirs[1 : size // 2], atol=2e-3)
    power = fbp_noise_power(np.array([0.1, 0.5, 0.51]), name)
    assert power[0] == pytest.approx(0.1 * filter_window(np.array(0.1), name) ** 2)
    assert power[2] == 0  # beyond the detector's Nyquist frequency


def test_augmentation_noise_has_the_dataset_filters_texture():
    """The texture follows the dataset's reconstruction filter: Hann-filtered noise loses
    power near the cut-off as ``W**2`` says; a dataset records the filter it was simulated
    with (``ramp`` for real LR scans)."""
    from microsr.data.records import DatasetInfo

    torch.manual_seed(2)
    ramp, _ = _radial_power(ct_noise((300, 64, 64), factor=2))
    hann, rho = _radial_power(ct_noise((300, 64, 64), factor=2, filter_name="hann"))
    band = lambda p, lo, hi: p[(rho > lo) & (rho < hi)].mean()
    # W(f) = 0.5 + 0.5 cos(2 pi f), f = 2 rho in cycles per LR pixel: W^2 falls from ~0.8
    # (rho 0.05-0.1) to ~0.04 (rho 0.2-0.24) relative to the ramp's
    relative = (band(hann, 0.2, 0.24) / band(hann, 0.05, 0.1)) / (
        band(ramp, 0.2, 0.24) / band(ramp, 0.05, 0.1)
    )
    assert relative < 0.15
    record = {"n_slices": 1, "n_lr_slices": 1, "crop_yxhw": [0, 0, 1, 1], "hr_slices": [0],
              "lr_t": [0.0], "hr_spacing_mm": [1.0, 1.0, 1.0]}  # fmt: skip
    config = {"simulation": {"acquisition": {"filter_name": "hann"}}}
    info = {"factor": 2, "normalization": {"mode": "minmax"}, "config": config}
    real = DatasetInfo.of(info | {"specimens": {"a": record}})
    simulated = DatasetInfo.of(info | {"specimens": {"a": record | {"simulated": {"draws": 1}}}})
    assert real.noise_filter == "ramp" and simulated.noise_filter == "hann"


def test_add_noise_draws_a_level_per_sample_up_to_the_maximum():
    torch.manual_seed(1)
    lr = torch.full((256, 3, 32, 32), 0.4)
    out = add_noise(lr, 0.1, factor=2)
    std = (out - lr).std(dim=(-2, -1))  # (B, C): one level per sample, all its channels
    assert std.max() <= 0.1 + 1e-5 and std.min() >= 0
    torch.testing.assert_close(std[:, 0], std[:, 2])
    assert std[:, 0].mean() == pytest.approx(0.05, rel=0.15)  # U(0, 0.1)
    assert not torch.equal(out[:, 0], out[:, 1])  # independent noise per context slice
    assert add_noise(lr, 0.0, factor=2) is lr
    with pytest.raises(ValueError, match="factor"):
        ct_noise((4, 4), factor=0)


def test_training_with_noise_augment_changes_the_model_and_records_it(pair_manifest, tmp_path):
    from microsr.checkpoint import read_checkpoint
    from microsr.data.prepare import PrepareConfig, prepare_dataset
    from microsr.models.factory import ModelConfig
    from microsr.training.config import TrainConfig
    from microsr.training.train import train

    data = prepare_dataset(pair_manifest, tmp_path / "ds", PrepareConfig(roi=24), progress=False)
    cfg = TrainConfig(
        model=ModelConfig(width=4, depth=2), epochs=1, batch_size=4, patch=16, seed=3,
        device="cpu", val_max_slices=2, structure_weight=0.0,
    )  # fmt: skip
    runs = []
    for i, level in enumerate((0.0, 0.0, 0.05)):
        result = train(data, tmp_path / f"r{i}", cfg.model_copy(update={"noise_augment": level}),
                       progress=False)  # fmt: skip
        runs.append(read_checkpoint(result.last))
    assert runs[2]["microsr"]["train_config"]["noise_augment"] == 0.05
    assert runs[2]["hyper_parameters"]["data"]["noise_filter"] == "ramp"  # real LR scans
    same, plain, noisy = (r["state_dict"] for r in runs)
    assert all(torch.equal(same[k], plain[k]) for k in plain)  # seeded: runs are repeatable
    assert any(not torch.equal(noisy[k], plain[k]) for k in plain)  # so the noise did this


def test_cli_train_refuses_a_negative_noise_level(tmp_path):
    from typer.testing import CliRunner

    from microsr.cli import app

    res = CliRunner().invoke(
        app, ["train", str(tmp_path / "ds"), str(tmp_path / "run"), "--noise-augment", "-0.1"]
    )
    assert res.exit_code == 2 and "--noise-augment" in res.output, res.output
    assert not (tmp_path / "run").exists()
