"""Networks that map an upsampled LR slice to HR-slice logits, and their factory."""

import importlib

#: Public name -> its module, imported on first use (so importing a torch-free submodule,
#: e.g. the config, does not import torch through this package).
_EXPORTS = {
    "ModelConfig": "microsr.models.config",
    "build_model": "microsr.models.factory",
    "count_parameters": "microsr.models.factory",
    "UNet": "microsr.models.unet",
}


__all__ = ["ModelConfig", "UNet", "build_model", "count_parameters"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
