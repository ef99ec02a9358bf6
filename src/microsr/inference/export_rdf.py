"""The bioimage.io resource description (spec 0.5) and model card of an exported checkpoint.

Used by :func:`microsr.inference.export.export_package`; the files it names (``weights.pt``,
``test_lr.npy``, ``test_sr.npy``, ``README.md``) are written into ``folder`` first.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

import microsr
from microsr.inference.checkpoint import LoadedModel

#: The method microsr implements, and the U-Net it builds on (the model card cites both).
CITES = (
    ("Ronneberger, Fischer & Brox (2015). U-Net: Convolutional networks for biomedical image "
     "segmentation. MICCAI.", "10.1007/978-3-319-24574-4_28"),
)  # fmt: skip


def model_card(loaded: LoadedModel) -> str:
    """Markdown documentation from the checkpoint's own record (:mod:`microsr.checkpoint`)."""
    meta = loaded.meta
    norm = meta.normalization
    window = (
        f"LR window {norm.lr_window}, HR window {norm.hr_window} (scan units)"
        if norm.mode == "window" else f"{norm.mode} (per-slice), {norm.source}"
    )  # fmt: skip
    train = json.dumps(meta.train_config, indent=2, default=str) if meta.train_config else "{}"
    return f"""# microsr super-resolution model ({meta.network.name})

Super-resolves low-resolution microCT slices of bone: in-plane factor {loaded.factor},
2.5D context of {loaded.context_slices} LR slice(s) on each side; output in the HR scan's
units. Exported by microsr {microsr.__version__} from `{loaded.path.name}` (trained with microsr
{meta.microsr_version}, seed {meta.seed}).

## Input and output
- input `lr`: `(batch=1, channel=1, z, y, x)` float32 LR slices in the LR scan's units
  (y and x: multiples of the size step in `rdf.yaml`); a stack of at least 1 slice. Edge
  slices are repeated for the context at the stack's ends.
- output `sr`: `(1, 1, z, y*{loaded.factor}, x*{loaded.factor})` in the HR scan's units, on the LR
  slice grid in z.
- normalisation inside the model: {window}.

## What this package cannot do (use `microsr predict`)
- the HR grid in z (interpolated slices between LR slices): the package stays on LR slices;
- tiling of slices larger than memory with blended overlaps, streaming from disk;
- scanner formats and spacing / origin / density calibration of the volume;
- bf16 and BatchNorm folding (fp32 here: the same numbers up to float rounding).

## Network
`{meta.model_class}`: `{meta.network.model_dump_json()}`

## Training record
```json
{train}
```
"""


def describe(loaded: LoadedModel, folder: Path, *, step: int):
    """The ``ModelDescr`` of the package whose files lie in ``folder``."""
    import bioimageio.spec.model.v0_5 as v

    (folder / "README.md").write_text(model_card(loaded))
    f, k = loaded.factor, loaded.context_slices
    tensor_lr, tensor_sr = v.TensorId("lr"), v.TensorId("sr")

    def space(axis: str, size, scale: float, halo: int = 0):
        if size is None:
            return v.SpaceOutputAxis(
                id=v.AxisId(axis), size=v.SizeReference(tensor_id=tensor_lr, axis_id=v.AxisId(axis)),
                scale=scale,
            ) if not halo else v.SpaceOutputAxisWithHalo(
                id=v.AxisId(axis), size=v.SizeReference(tensor_id=tensor_lr, axis_id=v.AxisId(axis)),
                scale=scale, halo=halo,
            )  # fmt: skip
        return v.SpaceInputAxis(id=v.AxisId(axis), size=size, scale=scale)

    inputs = [v.InputTensorDescr(
        id=tensor_lr, description="LR slices in the LR scan's units",
        axes=[v.BatchAxis(size=1), v.ChannelAxis(channel_names=[v.Identifier("lr")]),
              space("z", v.ParameterizedSize(min=2 * k + 1, step=1), 1.0),
              space("y", v.ParameterizedSize(min=step, step=step), 1.0),
              space("x", v.ParameterizedSize(min=step, step=step), 1.0)],
        test_tensor=v.FileDescr(source=folder / "test_lr.npy"),
        data=v.IntervalOrRatioDataDescr(type="float32"),
    )]  # fmt: skip
    outputs = [v.OutputTensorDescr(
        id=tensor_sr, description=f"SR slices in the HR scan's units (x{f} in y and x)",
        axes=[v.BatchAxis(size=1), v.ChannelAxis(channel_names=[v.Identifier("sr")]),
              space("z", None, 1.0, halo=k), space("y", None, 1.0 / f),
              space("x", None, 1.0 / f)],
        test_tensor=v.FileDescr(source=folder / "test_sr.npy"),
        data=v.IntervalOrRatioDataDescr(type="float32"),
    )]  # fmt: skip
    weights = v.WeightsDescr(torchscript=v.TorchscriptWeightsDescr(
        source=folder / "weights.pt", pytorch_version=v.Version(torch.__version__.split("+")[0]),
    ))  # fmt: skip
    return v.ModelDescr(
        name=f"microsr {loaded.meta.network.name} x{f} microCT bone super-resolution",
        description="Super-resolves LR microCT slices of bone (2.5D U-Net family, "
        f"in-plane factor {f}); intensity window and its inverse inside the model.",
        authors=[v.Author(name="microsr")],
        cite=[v.CiteEntry(text=t, doi=v.Doi(d)) for t, d in CITES],
        license=v.LicenseId("MIT"),
        documentation=v.FileDescr(source=folder / "README.md"),
        tags=["super-resolution", "microct", "bone", "2.5d", "pytorch"],
        inputs=inputs,
        outputs=outputs,
        weights=weights,
    )
