"""Tiny synthetic LR/HR pairs shared by the tests (no external data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from microsr.data.manifest import SpecimenRow, write_manifest
from microsr.io import write_volume
from microsr.volume import Volume

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lhdl_3155_D_4_bc"


def block_average(arr: np.ndarray, f: int) -> np.ndarray:
    """Exact f x f x f block average of a (Z, Y, X) array (remainders dropped)."""
    z, y, x = (n // f for n in arr.shape)
    a = arr[: z * f, : y * f, : x * f].reshape(z, f, y, f, x, f)
    return a.mean(axis=(1, 3, 5)).astype(np.float32)


def make_pair(seed: int, shape=(8, 36, 36), spacing=0.01, f=2) -> tuple[Volume, Volume]:
    """A smooth random 'bone-like' HR volume and its block-averaged LR partner."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.standard_normal(shape), 2.0)
    hr_arr = np.where(np.abs(field) < 0.05, 1000.0, 100.0).astype(np.float32)
    hr_arr = gaussian_filter(hr_arr, 0.7).astype(np.float32)
    hr = Volume(hr_arr, (spacing,) * 3)
    origin = tuple((f - 1) / 2 * spacing for _ in range(3))
    lr = Volume(
        block_average(hr_arr, f)
        + rng.normal(0, 20, (shape[0] // f, shape[1] // f, shape[2] // f)).astype(np.float32),
        (spacing * f,) * 3,
        origin,
    )
    return lr, hr


@pytest.fixture
def pair_manifest(tmp_path: Path) -> Path:
    """A manifest of 5 tiny specimens (.mha), two sites."""
    rows = []
    for i in range(5):
        lr, hr = make_pair(i)
        rows.append(
            SpecimenRow(
                f"s{i}",
                "femur" if i < 3 else "spine",
                write_volume(lr, tmp_path / f"s{i}_lr.mha"),
                write_volume(hr, tmp_path / f"s{i}_hr.mha"),
            )
        )
    return write_manifest(rows, tmp_path / "manifest.csv")


def loaded_model(
    model, *, in_channels=1, normalization=None, z_grid="hr", factor=2, version=2, spacings=None
):
    """A LoadedModel around any module, with a current-format metadata record.

    The default normalisation is the window 0..1000 (the grey range of the tests' volumes);
    ``spacings``: the recorded training ``(lr_spacing_mm, hr_spacing_mm)`` (default: none).
    """
    from microsr.checkpoint import CheckpointMeta
    from microsr.data.normalize import NormalizationConfig
    from microsr.inference.checkpoint import LoadedModel
    from microsr.models.factory import ModelConfig

    meta = CheckpointMeta(
        format_version=version,
        network=ModelConfig(in_channels=in_channels),
        factor=factor,
        z_grid=z_grid,
        normalization=normalization or NormalizationConfig(mode="window", low=0, high=1000),
        lr_spacing_mm=spacings[0] if spacings else None,
        hr_spacing_mm=spacings[1] if spacings else None,
    )
    return LoadedModel(model, meta, Path("x.ckpt"))


def save_model(path, config, *, normalization=None, z_grid="hr", seed=0):
    """A checkpoint file of a freshly built ``config`` model (:func:`microsr.checkpoint.save_checkpoint`)."""
    import torch

    from microsr.checkpoint import new_meta, save_checkpoint
    from microsr.data.normalize import NormalizationConfig
    from microsr.models.factory import build_model

    torch.manual_seed(seed)
    norm = normalization or NormalizationConfig(mode="window", low=0, high=1000)
    meta = new_meta(config, factor=2, normalization=norm)
    if z_grid != "hr":
        meta = meta.model_copy(update={"z_grid": z_grid, "format_version": 1})
    return save_checkpoint(path, build_model(config), meta)


@pytest.fixture(scope="module")
def client():
    """An in-process Dask ``LocalCluster`` of 2 single-threaded workers, and its client."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:  # fmt: skip
        yield c
