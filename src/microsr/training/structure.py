"""Structure-aware loss: differentiable bone segmentation at the morphometry threshold.

Pixel losses (L1, SSIM, BCE) reward grey values; the paper's outcome is a *segmentation*
(BA/TA, BV/TV, Tb.Th: :mod:`microsr.morphometry`), which responds to where grey values
cross the bone threshold. This term scores that directly. Both the prediction ``p`` and the
target ``y`` (the model's unit range, [0, 1]) are segmented softly as the morphometry
segments them (:mod:`microsr.morphometry.segment`: an in-plane Gaussian of ``sigma_vox``,
then a lower threshold ``t``), with the step replaced by a sigmoid of width ``tau``::

    s(x) = sigmoid((G_sigma * x - t) / tau)

and compared by

(a) the soft bone fraction: ``|mean s(p) - mean s(y)|`` per slice (the patch's BA/TA, with
    the patch as TA);
(b) the soft Dice loss ``1 - 2 <s(p), s(y)> / (|s(p)|^2 + |s(y)|^2)`` per slice, the squared
    form of Milletari, Navab & Ahmadi (2016), "V-Net", doi:10.1109/3DV.2016.79, which is 1
    exactly when ``s(p) = s(y)`` (Cauchy-Schwarz), soft or not;
(c) optionally the clDice topology loss of Shit et al. (2021), "clDice - a Novel Topology-
    Preserving Loss Function for Tubular Structure Segmentation", CVPR,
    doi:10.1109/CVPR46437.2021.01629: soft skeletons by iterated min/max pooling
    (:func:`soft_skeleton`), topology precision and sensitivity, ``1 - `` their harmonic mean.

The structure term is ``(a) + (b) [+ (c)]``; training adds ``structure_weight`` times it to
the pixel loss (:func:`microsr.training.losses.compute_loss`). As ``tau -> 0``, ``s`` tends
to the morphometry's binary segmentation, so (a) tends to the BA/TA error of the patch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CLDICE_ITERATIONS",
    "StructureTerm",
    "gaussian_blur",
    "soft_cldice_loss",
    "soft_dice_loss",
    "soft_fraction",
    "soft_segment",
    "soft_skeleton",
    "structure_loss",
]

#: Soft-skeleton iterations: each thins by one pixel per side, so structures up to about
#: twice this many pixels thick are reduced to their centre line.
CLDICE_ITERATIONS = 10
_EPS = 1e-6


class StructureTerm(BaseModel):
    """A resolved structure term (see the module docstring).

    Attributes
    ----------
    threshold
        Bone threshold in the model's unit range (``(value - low) / (high - low)`` of the
        HR window).
    tau
        Width of the sigmoid step, unit range; smaller is closer to a hard threshold.
    sigma_vox
        Gaussian smoothing before the threshold, in voxels (the morphometry's); 0: none.
    cldice
        Add the clDice topology term.
    iterations
        Soft-skeleton iterations of the clDice term.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(gt=0, lt=1)
    tau: float = Field(0.02, gt=0)
    sigma_vox: float = Field(1.2, ge=0)
    cldice: bool = False
    iterations: int = Field(CLDICE_ITERATIONS, ge=1)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian of ``(N, 1, H, W)`` images, truncated at 4 sigma, edges replicated.

    The kernel of :func:`microsr.morphometry.segment.smooth` (scipy's ``mode="nearest"``);
    ``sigma = 0`` returns ``image`` unchanged.
    """
    if sigma <= 0:
        return image
    radius = int(4 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    padded = F.pad(image, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(out, kernel.view(1, 1, -1, 1))


def soft_segment(image: torch.Tensor, term: StructureTerm) -> torch.Tensor:
    """Soft bone mask ``sigmoid((G * image - threshold) / tau)`` of ``(N, 1, H, W)`` images."""
    return torch.sigmoid((gaussian_blur(image, term.sigma_vox) - term.threshold) / term.tau)


def soft_fraction(mask: torch.Tensor) -> torch.Tensor:
    """Soft bone fraction (BA/TA with the whole image as TA) per slice, ``(N,)``."""
    return mask.flatten(1).mean(1)


def soft_dice_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean over slices of ``1 - 2 <a, b> / (|a|^2 + |b|^2)`` (Milletari et al. 2016).

    0 exactly when ``a == b``; 1 when they do not overlap; 0 for two empty slices.
    """
    a, b = a.flatten(1), b.flatten(1)
    dice = (2 * (a * b).sum(1) + _EPS) / ((a * a).sum(1) + (b * b).sum(1) + _EPS)
    return (1 - dice).mean()


def _erode(x: torch.Tensor) -> torch.Tensor:
    """Soft erosion: minimum over the 4-neighbourhood cross (min-pooling)."""
    along_y = -F.max_pool2d(-x, (3, 1), stride=1, padding=(1, 0))
    along_x = -F.max_pool2d(-x, (1, 3), stride=1, padding=(0, 1))
    return torch.minimum(along_y, along_x)


def _dilate(x: torch.Tensor) -> torch.Tensor:
    """Soft dilation: maximum over the 3 x 3 neighbourhood (max-pooling)."""
    return F.max_pool2d(x, 3, stride=1, padding=1)


def soft_skeleton(mask: torch.Tensor, iterations: int = CLDICE_ITERATIONS) -> torch.Tensor:
    """Soft morphological skeleton of ``(N, 1, H, W)`` masks in [0, 1] (Shit et al. 2021).

    At each of ``iterations`` erosions, what an opening removes (``x - open(x)``) is added;
    on a binary mask this is the morphological skeleton (Lantuejoul) up to that depth.
    """
    x = mask
    skeleton = F.relu(x - _dilate(_erode(x)))
    for _ in range(iterations):
        x = _erode(x)
        delta = F.relu(x - _dilate(_erode(x)))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


def soft_cldice_loss(
    a: torch.Tensor, b: torch.Tensor, iterations: int = CLDICE_ITERATIONS
) -> torch.Tensor:
    """``1 - clDice`` of soft masks ``a`` (prediction) and ``b`` (target), over the batch.

    Topology precision ``|S(a) b| / |S(a)|`` and sensitivity ``|S(b) a| / |S(b)|`` of the
    soft skeletons ``S`` (:func:`soft_skeleton`); clDice is their harmonic mean. 0 for
    identical binary masks.
    """
    skel_a, skel_b = soft_skeleton(a, iterations), soft_skeleton(b, iterations)
    precision = ((skel_a * b).sum() + _EPS) / (skel_a.sum() + _EPS)
    sensitivity = ((skel_b * a).sum() + _EPS) / (skel_b.sum() + _EPS)
    return 1 - 2 * precision * sensitivity / (precision + sensitivity)


def structure_loss(image: torch.Tensor, target: torch.Tensor, term: StructureTerm) -> torch.Tensor:
    """Soft-fraction error + soft Dice loss [+ clDice loss] of ``image`` against ``target``.

    Parameters
    ----------
    image, target
        ``(N, 1, H, W)`` in the model's unit range (``image = sigmoid(logits)``).
    term
        Threshold, sigmoid width, smoothing and whether to add clDice.
    """
    a, b = soft_segment(image, term), soft_segment(target, term)
    loss = (soft_fraction(a) - soft_fraction(b)).abs().mean() + soft_dice_loss(a, b)
    if term.cldice:
        loss = loss + soft_cldice_loss(a, b, term.iterations)
    return loss
