"""The model as a function of normalised slices, prepared for speed (:func:`image_fn`).

BatchNorm is folded into the preceding convolutions (exact in eval mode up to float
rounding), the layout is channels-last, the model optionally ``torch.compile``-d, and it runs
under bf16 autocast on CUDA and on CPUs with native bf16 instructions (AVX512-BF16 or AMX;
measured 2x faster than fp32 there, with SR images within 0.01 dB PSNR of fp32, see
BENCHMARKS.md), in fp32 on other CPUs. None of these options changes what is computed beyond
float rounding; ``tta`` averages the 8 flips/rotations (:mod:`microsr.inference.augment`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from microsr.calibration import InputUnits, OutputUnits
from microsr.inference.augment import tta_images
from microsr.inference.checkpoint import LoadedModel


class PredictOptions(BaseModel):
    """How prediction runs (:mod:`microsr.inference.engine`).

    ``z_grid`` chooses the output slices, ``force`` runs an input at the HR target and
    ``keep_factors`` keeps the trained factors on any input (:mod:`microsr.inference.scale`);
    ``input_units`` / ``output_units`` (and ``force``) say how density units are converted
    (:mod:`microsr.inference.units`); the other options change only speed and float
    rounding (``tta``: averaging over flips and rotations).

    ``precision="auto"``: bf16 autocast on CUDA (fp16 where bf16 is unsupported) and on
    CPUs with native bf16 (:func:`cpu_has_native_bf16`), fp32 on other CPUs.
    ``channels_last``: on by default (measured faster on CPU and the usual choice on
    CUDA, see BENCHMARKS.md). ``prefetch``: batches read ahead and queued for writing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_size: int | None = Field(
        None, ge=1, description="slices per batch; None: 8 on CUDA, 1 on CPU (measured faster)"
    )
    tile: int = Field(512, ge=8, description="tile side (HR px) for slices larger than this")
    overlap: int = Field(32, ge=0)
    precision: Literal["auto", "32", "bf16", "16"] = "auto"
    channels_last: bool = True
    fuse_bn: bool = True
    compile: bool = False
    tta: bool = False
    prefetch: int = Field(2, ge=1)
    z_grid: Literal["auto", "hr", "lr"] = Field(
        "auto",
        description="output slices: hr (factor x the LR slices, isotropic), lr (the LR slices, "
        "in-plane only), auto (the grid the checkpoint was trained for)",
    )
    force: bool = Field(
        False,
        description="run an input already at or finer than the model's HR target voxel (an HR "
        "scan given as LR) with the trained factors, or in units that do not convert into the "
        "model's (taken as the model's), instead of refusing it",
    )
    keep_factors: bool = Field(
        False,
        description="upsample by the model's trained factors from the input's own voxel size "
        "(SR voxel = input voxel / factor), whatever the model's HR voxel: a transfer across "
        "physical scales (warned), instead of aiming at the model's HR voxel size",
    )
    input_units: InputUnits = Field(
        "auto",
        description="what the input's values are: auto (its calibration says), mgha (mg "
        "HA/cm3), model (already in the model's units)",
    )
    output_units: OutputUnits = Field(
        "input",
        description="SR in the input's own units with its calibration, or in mg HA/cm3",
    )


def batch_size(options: PredictOptions, device: torch.device) -> int:
    """Slices per batch: the option, else 8 on CUDA and 1 on CPU.

    On a quiet 2-core CPU, batch 1 predicted 400 x 400 slices faster than batch 8
    (7.5 vs 5.1 slices/s, BENCHMARKS.md): the convolutions already saturate the cores and
    bigger batches only add memory traffic. GPUs need batches to fill.
    """
    if options.batch_size is not None:
        return options.batch_size
    return 8 if device.type == "cuda" else 1


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with each ``Conv2d -> BatchNorm2d`` pair fused.

    Only adjacent pairs inside ``nn.Sequential`` containers are fused (there the conv
    output feeds nothing but the norm); the norm becomes ``nn.Identity``.
    """
    model = copy.deepcopy(model).eval()
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in itertools.pairwise(names):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return model


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), so bf16 convs are fast.

    Without them oneDNN emulates bf16, which is slower than fp32; ``precision="auto"``
    then stays in fp32 on the CPU.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype ``precision`` resolves to on ``device``; None: plain fp32."""
    if precision == "32":
        return None
    if precision == "auto" and device.type != "cuda":
        return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None
    if precision == "16":
        return torch.float16
    if device.type == "cuda" and precision == "auto" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def image_fn(
    loaded: LoadedModel, options: PredictOptions
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> sigmoid(model(x))`` (float32) on ``loaded.device``, prepared for speed."""
    device = loaded.device
    model = fold_batchnorm(loaded.model) if options.fuse_bn else loaded.model
    channels_last = options.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if options.compile:
        model = torch.compile(model)
    dtype = autocast_dtype(device, options.precision)

    def run(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        return torch.sigmoid(logits.float())

    def fn(x: torch.Tensor) -> torch.Tensor:
        return tta_images(run, x) if options.tta else run(x)

    return fn
