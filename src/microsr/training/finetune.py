"""Fine-tuning (``microsr train --init CKPT``): start from a trained model's weights.

A lab with a few real LR/HR pairs of its own scanner fine-tunes a model trained on other
data: the network starts from the checkpoint's weights with a fresh Adam optimiser and an
epoch counter at 0, and keeps the checkpoint's intensity normalisation (the window is not
refitted on the new dataset, so inputs mean what they meant to the model). BatchNorm
statistics stay the checkpoint's by default (``TrainConfig.freeze_batchnorm``): one or two
specimens are too few to re-estimate them.

The dataset must fit the checkpoint: the same scale factors (in-plane and z), the same
normalisation mode and units, intensities inside the checkpoint's window; and the training
config must build the checkpoint's network (model, width, depth, context). Anything else is
refused with a :class:`~microsr.errors.MicrosrError`. The new checkpoint records its source
(``provenance.init``: path and SHA-256).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from microsr.checkpoint import parse_checkpoint
from microsr.data.normalize import NormalizationConfig
from microsr.data.prepare import dataset_units
from microsr.data.records import DatasetInfo
from microsr.errors import InputFileError, MicrosrError
from microsr.models.factory import ModelConfig

__all__ = [
    "InitSource",
    "check_dataset_fits",
    "check_network",
    "describe_network",
    "finetune_info",
    "sha256_file",
]

#: A dataset window end may differ from the checkpoint's by this fraction of its width.
WINDOW_TOLERANCE = 0.5


class InitSource:
    """A checkpoint to fine-tune from: its metadata, weights and record.

    Parameters
    ----------
    path
        The checkpoint file (read once; its SHA-256 is of the bytes read).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta, self.state = parse_checkpoint(self.path)
        if self.meta.z_grid != "hr":
            raise InputFileError(
                self.path, "a format-1 checkpoint (LR-slice grid) cannot be fine-tuned; "
                "train a new model",
            )  # fmt: skip
        self.sha256 = sha256_file(self.path)

    @property
    def record(self) -> dict:
        """``{"path", "sha256"}``: what the new checkpoint records of its source."""
        return {"path": str(self.path.resolve()), "sha256": self.sha256}

    def load_into(self, model: torch.nn.Module) -> None:
        """Copy the checkpoint's weights into ``model`` (same architecture, strict)."""
        model.load_state_dict(self.state, strict=True)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_network(net: ModelConfig) -> str:
    """``"unet_residual (width 16, depth 3, context 1)"``."""
    return f"{net.name} (width {net.width}, depth {net.depth}, context {net.context_slices})"


def check_network(source: InitSource, network: ModelConfig) -> None:
    """Refuse a training config whose network is not the checkpoint's."""
    if network != source.meta.network:
        raise InputFileError(
            source.path,
            f"the checkpoint is a {describe_network(source.meta.network)}; the training config "
            f"builds a {describe_network(network)}: fine-tuning keeps the checkpoint's network "
            "(leave out --model, --width, --depth, --context)",
        )


def check_dataset_fits(
    source: InitSource, info: dict | DatasetInfo, dataset_dir: str | Path
) -> None:
    """Refuse a dataset whose factors, normalisation mode, units or intensities do not fit
    the checkpoint (module docstring)."""
    meta, ds, info = source.meta, Path(dataset_dir), DatasetInfo.of(info)
    factors = (info.factor, info.slice_factor)
    if factors != (meta.factor, meta.slice_factor):
        raise MicrosrError(
            f"{ds}: the dataset's scale factors (in-plane, z) are {factors}, the checkpoint "
            f"{source.path}'s {(meta.factor, meta.slice_factor)}; fine-tune on data of the "
            "same factors"
        )
    data, trained = dataset_units(info), meta.units
    if (
        data is not None
        and trained is not None
        and (data.kind == "mgha") != (trained.kind == "mgha")
    ):
        raise MicrosrError(
            f"{ds}: the dataset is in {data.describe()}, the checkpoint {source.path} was "
            f"trained on {trained.describe()}; prepare the dataset with --units "
            f"{'mgha' if trained.kind == 'mgha' else 'native'}"
        )
    _check_intensities(source, info.normalization, ds)


def _check_intensities(source: InitSource, data: NormalizationConfig, ds: Path) -> None:
    model = source.meta.normalization
    if data.mode != model.mode:
        raise MicrosrError(
            f"{ds}: the dataset is normalised by {data.mode}, the checkpoint {source.path} by "
            f"{model.mode}; prepare it with the checkpoint's normalisation"
        )
    if model.mode != "window":
        return
    for role, ours, theirs in (
        ("HR", (data.low, data.high), (model.low, model.high)),
        ("LR", data.lr_window, model.lr_window),
    ):
        width = theirs[1] - theirs[0]
        if max(abs(ours[0] - theirs[0]), abs(ours[1] - theirs[1])) > WINDOW_TOLERANCE * width:
            raise MicrosrError(
                f"{ds}: the dataset's {role} intensities (window {ours[0]:.4g}..{ours[1]:.4g}) "
                f"do not fit the checkpoint {source.path}'s window ({theirs[0]:.4g}.."
                f"{theirs[1]:.4g}): other units or another scaling? prepare the dataset in "
                "the checkpoint's units (--units, --lr-window)"
            )


def finetune_info(source: InitSource, info: dict | DatasetInfo) -> DatasetInfo:
    """``info`` (a dataset.json) with the checkpoint's normalisation instead of its own."""
    return DatasetInfo.of(info).with_normalization(source.meta.normalization)
