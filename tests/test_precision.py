"""Prediction precision and memory layout: which dtype "auto" picks, and that it stays close."""

import numpy as np
import pytest
import torch
from conftest import loaded_model

from microsr.inference import runner
from microsr.inference.engine import predict_stream
from microsr.inference.runner import PredictOptions, autocast_dtype, cpu_has_native_bf16, image_fn
from microsr.io import open_slices, read_volume, write_volume
from microsr.metrics.image import psnr
from microsr.models.residual import GlobalResidual
from microsr.models.unet import UNet
from microsr.volume import Volume

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_on_cpus_with_bf16_instructions_only(monkeypatch, native):
    monkeypatch.setattr(runner, "cpu_has_native_bf16", lambda: native)
    assert autocast_dtype(CPU, "auto") == (torch.bfloat16 if native else None)
    assert autocast_dtype(CPU, "32") is None
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16  # asked for: always honoured
    assert autocast_dtype(CPU, "16") == torch.float16


@pytest.mark.parametrize("bf16_ok", [True, False])
def test_auto_on_cuda_is_bf16_or_fp16_fallback(monkeypatch, bf16_ok):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
    assert autocast_dtype(CUDA, "auto") == (torch.bfloat16 if bf16_ok else torch.float16)
    assert autocast_dtype(CUDA, "32") is None


@pytest.mark.parametrize(
    "avx512_bf16,amx,expected", [(True, False, True), (False, True, True), (False, False, False)]
)
def test_native_bf16_comes_from_the_cpu_flags(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert cpu_has_native_bf16() is expected


def _slice_and_model():
    """A smooth 'bone' slice and a residual U-Net with non-zero weights and BN statistics.

    The residual form keeps the image's structure (values across [0.1, 0.9]), so bf16
    rounding is tested where sigmoid is steep, not only near a flat 0.5.
    """
    yy, xx = np.mgrid[0:48, 0:40] / 8.0
    img = 0.5 + 0.4 * np.sin(yy) * np.cos(1.3 * xx)
    torch.manual_seed(0)
    net = GlobalResidual(UNet(width=8, depth=2))
    torch.nn.init.normal_(net.body.head.weight, std=0.5)  # a non-zero residual
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2)
    loaded = loaded_model(net.eval())
    return torch.from_numpy(img[None, None].astype(np.float32)), loaded


def _images(loaded, x, **opts):
    with torch.inference_mode():
        return image_fn(loaded, PredictOptions(**opts))(x)


def test_bf16_images_differ_from_fp32_but_stay_within_tolerance():
    x, loaded = _slice_and_model()
    ref = _images(loaded, x, precision="32", channels_last=False, fuse_bn=False)
    low = _images(loaded, x, precision="bf16")
    assert low.dtype == torch.float32
    diff = (low - ref).abs()
    assert diff.max() > 0  # autocast really ran in bf16
    # bf16 keeps 8 mantissa bits: images in [0, 1] move by well under 1 %, far below
    # what separates SR from bilinear (several dB)
    assert diff.max() < 0.01
    assert psnr(ref[0, 0].numpy(), low[0, 0].numpy(), data_range=1.0) > 45


def test_channels_last_and_folding_change_layout_not_values():
    x, loaded = _slice_and_model()
    ref = _images(loaded, x, precision="32", channels_last=False, fuse_bn=False)
    fast = _images(loaded, x, precision="32", channels_last=True, fuse_bn=True)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("precision,recorded", [("32", "float32"), ("bf16", "bfloat16")])
def test_output_records_the_precision_it_was_computed_in(tmp_path, precision, recorded):
    lr = Volume(np.random.default_rng(0).random((3, 8, 9)).astype(np.float32), (0.02,) * 3)
    lr_path = write_volume(lr, tmp_path / "lr.tif")
    _, loaded = _slice_and_model()
    out = predict_stream(
        loaded,
        open_slices(lr_path),
        tmp_path / "sr.tif",  # TIFF keeps metadata (MetaImage keeps geometry only)
        options=PredictOptions(precision=precision),
        progress=False,
    )
    assert read_volume(out).metadata["microsr_precision"] == recorded
