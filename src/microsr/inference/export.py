"""``microsr export``: a checkpoint as a bioimage.io model package (deepImageJ, napari, Python).

The package (a zip: ``rdf.yaml`` in the bioimage.io model spec 0.5, TorchScript weights, test
tensors, a model card) holds ONE traced module that does everything ``predict --z-grid lr``
does to a stack of LR slices, so a consumer needs no pre- or post-processing of its own:

1. input ``(1, 1, Z, h, w)``: LR slices in the LR scan's units (float32);
2. each slice gets its ``k`` neighbours on each side as channels (the 2.5D context; the edge
   slices repeated at the stack's ends, as ``predict`` does at the volume's ends);
3. bilinear upsampling by the in-plane ``factor`` (:func:`microsr.pairing.upsample.upsample_bilinear`);
4. the checkpoint's intensity window (or per-slice min-max) to [0, 1]
   (:mod:`microsr.data.normalize`), the network, a sigmoid;
5. the inverse window back to the HR scan's units: output ``(1, 1, Z, h f, w f)``.

What it cannot do that ``microsr predict`` does: the HR grid in z (interpolated slices
between LR slices; the package stays on the LR slice grid), tiling of slices larger than
memory with blended overlaps, streaming a volume from disk, reading scanner formats and
keeping spacing/origin/calibration, bf16 and BatchNorm folding (the package computes in fp32
on the unfolded network: the same numbers up to float rounding).
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from microsr.data.normalize import (
    NormalizationConfig,
    from_unit,
    input_range,
    output_range,
    to_unit,
)
from microsr.errors import MicrosrError
from microsr.inference.checkpoint import LoadedModel, load_checkpoint
from microsr.io.atomic import atomic_path, check_output

log = logging.getLogger(__name__)

#: Test tensor: LR slices ``(Z, h, w)`` (small: the package's own test runs it on CPU).
TEST_SHAPE = (3, 32, 32)


class PackagedSR(nn.Module):
    """LR slices ``(1, 1, Z, h, w)`` -> SR slices ``(1, 1, Z, h f, w f)`` in HR units."""

    def __init__(self, network: nn.Module, norm: NormalizationConfig, *, factor: int, k: int):
        super().__init__()
        self.network, self.norm, self.factor, self.k = network.eval(), norm, factor, k

    def _range(self, slices: torch.Tensor, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Window mode: one-element tensors that broadcast over any slice count (traced
        constants); min-max modes: per slice, as the engine computes them."""
        if self.norm.mode == "window":
            lo, hi = getattr(self.norm, "lr_window" if which == "in" else "hr_window")
            return torch.tensor([lo]), torch.tensor([hi])
        return input_range(slices, self.norm) if which == "in" else output_range(slices, self.norm)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        k, c = self.k, 2 * self.k + 1
        padded = F.pad(lr, (0, 0, 0, 0, k, k), mode="replicate")[0, 0]  # (Z + 2k, h, w)
        stacks = padded.unfold(0, c, 1).permute(0, 3, 1, 2)  # (Z, c, h, w): z-k .. z+k
        if self.factor > 1:
            stacks = F.interpolate(
                stacks, scale_factor=self.factor, mode="bilinear", align_corners=False
            )
        z, _, h, w = stacks.shape
        flat = stacks.reshape(z * c, h, w)
        x = to_unit(flat, *self._range(flat, "in")).reshape(z, c, h, w)
        y = torch.sigmoid(self.network(x).float())[:, 0]
        low, high = self._range(stacks[:, k], "out")
        return from_unit(y, low, high)[None, None]


def size_step(loaded: LoadedModel) -> int:
    """In-plane LR size step for which the network needs no padding (U-Nets: ``2**depth``)."""
    net = loaded.meta.network
    multiple = 2**net.depth if net.name.startswith("unet") else 1
    return max(1, multiple // math.gcd(multiple, loaded.factor))


def trace_package_module(loaded: LoadedModel) -> tuple[torch.jit.ScriptModule, np.ndarray]:
    """Trace :class:`PackagedSR` and check it against the eager module on a second shape.

    Returns the traced module and the test input ``(1, 1, Z, h, w)``.

    Raises
    ------
    MicrosrError
        Tracing fails, or the traced module does not reproduce the eager one on another
        slice count and size (data-dependent control flow the trace baked in).
    """
    module = PackagedSR(
        loaded.model.cpu(), loaded.meta.normalization,
        factor=loaded.factor, k=loaded.context_slices,
    )  # fmt: skip
    step = size_step(loaded)
    side = step * max(1, math.ceil(TEST_SHAPE[1] / step))
    norm = loaded.meta.normalization
    lo, hi = norm.lr_window if norm.mode == "window" else (0.0, 1000.0)
    rng = np.random.default_rng(0)
    z = max(TEST_SHAPE[0], 2 * loaded.context_slices + 2)
    test = (lo + (hi - lo) * rng.random((1, 1, z, side, side))).astype(np.float32)
    shape = (1, 1, z + 1, side + step, side + 2 * step)  # another Z, h and w
    other = torch.from_numpy((lo + (hi - lo) * rng.random(shape)).astype(np.float32))
    try:
        with torch.no_grad():
            traced = torch.jit.trace(module, torch.from_numpy(test), check_trace=False)
            same = torch.allclose(traced(other), module(other), rtol=1e-4, atol=1e-4 * (hi - lo))
    except Exception as exc:  # tracing raises many kinds
        raise MicrosrError(
            f"{loaded.path}: its {type(loaded.model).__name__} cannot be traced to TorchScript "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "nothing was written"
        ) from exc
    if not same:
        raise MicrosrError(
            f"{loaded.path}: the traced {type(loaded.model).__name__} does not reproduce the "
            "model on another input size (shape-dependent Python code); nothing was written"
        )
    return traced, test


def export_package(
    checkpoint: str | Path, out_path: str | Path, *, overwrite: bool = False
) -> Path:
    """Write the bioimage.io model package of ``checkpoint`` to ``out_path`` (``.zip``).

    Raises
    ------
    MicrosrError
        Output not ``.zip`` (or existing without ``overwrite``), an unreadable checkpoint, or
        a model that cannot be traced (:func:`trace_package_module`).
    """
    try:
        from bioimageio.spec import save_bioimageio_package
    except ImportError as exc:
        raise MicrosrError(
            "microsr export needs bioimageio.core: pip install 'microsr[export]'"
        ) from exc

    from microsr.inference.bioimageio_compat import patch_bioimageio_serializers
    from microsr.inference.export_rdf import describe

    patch_bioimageio_serializers()
    out = Path(out_path)
    if out.suffix.lower() != ".zip":
        raise MicrosrError(f"{out}: a bioimage.io package is a .zip file; name it *.zip")
    check_output(out, inputs=[checkpoint], overwrite=overwrite)
    loaded = load_checkpoint(checkpoint, device="cpu")
    traced, test = trace_package_module(loaded)
    with torch.no_grad():
        expected = traced(torch.from_numpy(test)).numpy()
    with tempfile.TemporaryDirectory(prefix="microsr-export-") as tmp:
        folder = Path(tmp)
        torch.jit.save(traced, str(folder / "weights.pt"))
        np.save(folder / "test_lr.npy", test)
        np.save(folder / "test_sr.npy", expected)
        rdf = describe(loaded, folder, step=size_step(loaded))
        with atomic_path(out) as tmp_zip:
            save_bioimageio_package(rdf, output_path=tmp_zip)
    log.info("wrote %s (bioimage.io model, TorchScript)", out)
    return out
