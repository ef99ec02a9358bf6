"""Networks that map an upsampled LR slice to HR-slice logits, and their factory."""

from microsr.models.factory import ModelConfig, build_model, count_parameters
from microsr.models.unet import UNet

__all__ = ["ModelConfig", "UNet", "build_model", "count_parameters"]
