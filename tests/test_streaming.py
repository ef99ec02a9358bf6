"""Streaming prediction: lazy readers, incremental writers, the read/predict/write pipeline."""

import numpy as np
import pytest
import torch
from conftest import loaded_model

from microsr.data.normalize import NormalizationConfig
from microsr.errors import InputFileError
from microsr.inference.engine import predict_stream
from microsr.inference.predict import predict_volume
from microsr.inference.runner import PredictOptions, fold_batchnorm
from microsr.io import open_slices, read_volume, template, write_slices, write_volume
from microsr.models.unet import UNet
from microsr.pairing.upsample import sample_z, upsample_bilinear
from microsr.volume import Calibration, Volume


class _Channel(torch.nn.Module):
    """``logit`` of input channel ``c``: sigmoid(model(x)) reproduces that channel."""

    def __init__(self, c: int = 0) -> None:
        super().__init__()
        self.c = c

    def forward(self, x):
        return torch.logit(x[:, self.c : self.c + 1].clamp(1e-6, 1 - 1e-6))


#: Trained on _lr()'s anisotropic voxels, for an HR target half their size on every axis.
SPACINGS = ((0.04, 0.02, 0.03), (0.02, 0.01, 0.015))


def _loaded(model=None, in_channels=1):
    return loaded_model(model or _Channel(), in_channels=in_channels, spacings=SPACINGS)


def _trilinear(array: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(array)[None, None]
    return torch.nn.functional.interpolate(t, scale_factor=2, mode="trilinear")[0, 0].numpy()


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
    ref = predict_volume(_loaded(), read_volume(lr_path), options=opts, progress=False)
    sr = read_volume(written)
    assert sr.shape == (14, 18, 22) and sr.array.dtype == np.float32
    assert sr.spacing_mm == pytest.approx(ref.spacing_mm)
    assert sr.origin_mm == pytest.approx(ref.origin_mm)
    assert sr.calibration == lr.calibration
    np.testing.assert_allclose(sr.array, ref.array, rtol=1e-5, atol=1e-3)
    # the identity-like model gives back the trilinear upsampling of the LR input
    np.testing.assert_allclose(sr.array, _trilinear(lr.array), atol=2e-2)
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


def test_context_model_sees_its_neighbours_across_block_boundaries(tmp_path):
    # A 2.5D model (3 channels = LR at t - 1, t, t + 1) returning its first channel must give
    # the LR volume one LR slice below each output slice (clamped): this checks the halo read
    # around each block of output slices.
    lr = _lr(8, 5, 6)
    path = write_volume(lr, tmp_path / "lr.mha")
    opts = PredictOptions(batch_size=3, prefetch=1)
    out = predict_stream(
        _loaded(_Channel(0), 3), open_slices(path), tmp_path / "o.mha", options=opts,
        progress=False,
    )  # fmt: skip
    sr = read_volume(out).array
    t = (np.arange(16) - 0.5) / 2 - 1  # one LR slice below each HR-grid slice
    expected = upsample_bilinear(sample_z(lr.array, t, n=8), factor=2)
    np.testing.assert_allclose(sr, expected, atol=2e-2)


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


def test_nifti_output_is_streamed_and_reads_back(tmp_path):
    vol = _lr(6, 5, 7)
    target = template(vol.shape, vol.spacing_mm, vol.origin_mm, vol.calibration)
    for name in ("a.nii", "a.nii.gz"):
        written = write_slices(target, [vol.array[:4], vol.array[4:]], tmp_path / name)
        back = read_volume(written)
        np.testing.assert_array_equal(back.array, vol.array)
        assert back.spacing_mm == pytest.approx(vol.spacing_mm)
        assert back.origin_mm == pytest.approx(vol.origin_mm)


def test_far_out_of_window_input_warns(tmp_path, caplog):
    lr = _lr(3, 5, 6)
    scaled = lr.with_array(lr.array / 1000)  # data in [0, 1] given to a 0..1000 model
    norm = NormalizationConfig(mode="window", low=0, high=1000)
    with caplog.at_level("WARNING"):
        predict_volume(loaded_model(_Channel(), normalization=norm), scaled, progress=False)
    assert "far outside the LR window" in caplog.text
