"""Image quality metrics: PSNR and SSIM per slice, with an explicit ``data_range``."""

from microsr.metrics.image import (
    SSIM_WIN_SIZE,
    psnr,
    psnr_batch,
    ssim,
    ssim_batch,
    ssim_map,
)

__all__ = ["SSIM_WIN_SIZE", "psnr", "psnr_batch", "ssim", "ssim_batch", "ssim_map"]
