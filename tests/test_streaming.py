"""Streaming prediction: lazy readers, incremental writers, the read/predict/write pipeline."""

import numpy as np
import pytest
import torch

from microsr.data.upsample import upsample_bilinear
from microsr.errors import InputFileError
from microsr.inference.checkpoint import LoadedModel
from microsr.inference.engine import PredictOptions, fold_batchnorm, predict_stream
from microsr.inference.predict import predict_volume
from microsr.inference.reader import open_slices
from microsr.inference.writer import template, write_slices
from microsr.io import read_volume, write_volume
from microsr.models.unet import UNet
from microsr.volume import Calibration, Volume


class _Channel(torch.nn.Module):
    """``logit`` of input channel ``c``: sigmoid(model(x)) reproduces that channel."""

    def __init__(self, c: int = 0) -> None:
        super().__init__()
        self.c = c

    def forward(self, x):
        return torch.logit(x[:, self.c : self.c + 1].clamp(1e-6, 1 - 1e-6))


def _loaded(model=None, in_channels=1):
    meta = {
        "factor": 2,
        "normalization": {"mode": "minmax"},
        "model_config": {"in_channels": in_channels},
    }
    return LoadedModel(model or _Channel(), meta, "x.ckpt")


def _lr(z=7, y=9, x=11, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    arr = (rng.random((z, y, x)) * 1000).astype(np.float32)
    return Volume(arr, (0.04, 0.02, 0.03), (1.0, 2.0, 3.0), Calibration(2.0, -5.0), {"a": 1})


@pytest.mark.parametrize(
    "name,streamed",
    [("in.tif", True), ("in_dir", True), ("in.mha", True), ("in.mhd", True), ("in.nii", True)]
    + [("in.nii.gz", False), ("in.nrrd", False)],
)
def test_reader_reads_any_slice_range_like_read_volume(tmp_path, name, streamed):
    vol = _lr()
    path = write_volume(vol, tmp_path / name)
    whole = read_volume(path)
    src = open_slices(path)
    assert src.streamed is streamed and src.shape == whole.shape
    assert src.spacing_mm == pytest.approx(whole.spacing_mm)
    assert src.origin_mm == pytest.approx(whole.origin_mm)
    assert src.calibration == whole.calibration
    np.testing.assert_array_equal(src.read(2, 5), whole.array[2:5])
    np.testing.assert_array_equal(src.read(6, 7), whole.array[6:7])


@pytest.mark.parametrize("out", ["sr.tif", "sr_dir", "sr.mha", "sr.mhd", "sr.nii.gz", "sr.nrrd"])
def test_stream_prediction_matches_in_memory_prediction(tmp_path, out):
    lr = _lr()
    lr_path = write_volume(lr, tmp_path / "lr.tif")
    opts = PredictOptions(batch_size=3, prefetch=1)
    written = predict_stream(
        _loaded(), open_slices(lr_path), tmp_path / out, options=opts, progress=False
    )
    ref = predict_volume(_loaded(), read_volume(lr_path), batch_size=3, progress=False)
    sr = read_volume(written)
    assert sr.shape == (7, 18, 22) and sr.array.dtype == np.float32
    assert sr.spacing_mm == pytest.approx(ref.spacing_mm)
    assert sr.origin_mm == pytest.approx(ref.origin_mm)
    assert sr.calibration == lr.calibration
    np.testing.assert_allclose(sr.array, ref.array, rtol=1e-5, atol=1e-3)
    # the identity-like model gives back the bilinear upsampling of the LR input
    np.testing.assert_allclose(sr.array, upsample_bilinear(lr.array, factor=2), atol=2e-2)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_streamed_tiff_is_byte_identical_to_write_volume(tmp_path):
    vol = _lr(5, 6, 7)
    target = template(vol.shape, vol.spacing_mm, vol.origin_mm, vol.calibration, vol.metadata)
    batches = [vol.array[:2], vol.array[2:3], vol.array[3:]]
    a = write_slices(target, batches, tmp_path / "a.tif")
    b = write_volume(vol, tmp_path / "b.tif")
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("out", ["x.tif", "x_dir", "x.mha", "x.mhd", "x.nii"])
def test_failed_stream_leaves_nothing_at_the_target(tmp_path, out):
    vol = _lr(5, 6, 7)
    target = template(vol.shape, vol.spacing_mm, vol.origin_mm)

    def dying():
        yield vol.array[:2]
        raise KeyboardInterrupt  # like Ctrl-C / a kill in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        write_slices(target, dying(), tmp_path / out)
    assert list(tmp_path.iterdir()) == []


def test_context_model_sees_its_neighbours_across_batch_boundaries(tmp_path):
    # A 2.5D model (3 channels = slices i-1, i, i+1) returning its first channel must give
    # the upsampled slice i-1 (clamped at 0): this checks the halo read around each batch.
    lr = _lr(8, 5, 6)
    path = write_volume(lr, tmp_path / "lr.mha")
    opts = PredictOptions(batch_size=3, prefetch=1)
    out = predict_stream(
        _loaded(_Channel(0), 3), open_slices(path), tmp_path / "o.mha", options=opts,
        progress=False,
    )  # fmt: skip
    sr = read_volume(out).array
    up = upsample_bilinear(lr.array, factor=2)
    prev = up[np.clip(np.arange(8) - 1, 0, 7)]

    # prediction is rescaled by the centre slice's range: compare after per-slice min-max
    def mm(a):
        lo, hi = a.min((1, 2), keepdims=True), a.max((1, 2), keepdims=True)
        return (a - lo) / (hi - lo)

    np.testing.assert_allclose(mm(sr), mm(prev), atol=1e-4)


def test_folded_batchnorm_gives_the_same_model():
    torch.manual_seed(0)
    net = UNet(width=4, depth=2)
    for m in net.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    net.eval()
    x = torch.rand(2, 1, 19, 13)
    fused = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-4)


def test_bad_slice_in_a_folder_names_the_file_and_leaves_no_output(tmp_path):
    lr = _lr(6, 5, 6)
    folder = write_volume(lr, tmp_path / "lr_dir")
    bad = sorted(folder.iterdir())[4]
    bad.write_bytes(b"not a tiff")
    with pytest.raises(InputFileError, match=bad.name):
        predict_stream(
            _loaded(), open_slices(folder), tmp_path / "sr.tif",
            options=PredictOptions(batch_size=2), progress=False,
        )  # fmt: skip
    assert not (tmp_path / "sr.tif").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr_dir"]


def test_nonfinite_voxels_are_refused_while_streaming(tmp_path):
    lr = _lr(4, 5, 6)
    arr = lr.array.copy()
    arr[3, 2, 2] = np.nan
    path = tmp_path / "lr.mha"
    write_volume(lr.with_array(arr), path)
    with pytest.raises(InputFileError, match="NaN or Inf"):
        predict_stream(_loaded(), open_slices(path), tmp_path / "sr.mha", progress=False)
    assert not (tmp_path / "sr.mha").exists()
