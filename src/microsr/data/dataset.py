"""PyTorch datasets over a prepared dataset folder (memory-mapped, streamed from disk)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class SlicePairs:
    """Index of ``(specimen, slice)`` pairs across specimens of a prepared dataset.

    With ``context = k > 0`` (2.5D input) the LR side of a pair is the stack of LR slices
    ``i - k .. i + k`` of the same specimen, clamped at its ends (the prepared ``lr.npy``
    holds the paired slices in z order). The ``.npy`` files are opened lazily with ``mmap_mode="r"`` (once per worker process),
    so nothing but the requested slice is read.
    """

    def __init__(
        self, dataset_dir: str | Path, info: dict, specimens: list[str], *, context: int = 0
    ) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        self.dataset_dir = Path(dataset_dir)
        self.context = context
        self.specimens = list(specimens)
        counts = [info["specimens"][s]["n_slices"] for s in self.specimens]
        self.spec_index = np.repeat(np.arange(len(self.specimens)), counts)
        self.slice_index = (
            np.concatenate([np.arange(c) for c in counts]) if counts else np.zeros(0, int)
        )
        self.shapes = [tuple(info["specimens"][s]["crop_yxhw"][2:]) for s in self.specimens]

    def __len__(self) -> int:
        return len(self.spec_index)

    @cached_property
    def _arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        root = self.dataset_dir / "specimens"
        return [
            (
                np.load(root / s / "lr.npy", mmap_mode="r"),
                np.load(root / s / "hr.npy", mmap_mode="r"),
            )
            for s in self.specimens
        ]

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``i``-th (LR, HR) slice pair, float32 in [0, 1].

        LR is ``(H, W)`` (memory-mapped) without context, ``(2k + 1, H, W)`` with it; HR is
        ``(H, W)``.
        """
        lr, hr = self._arrays[self.spec_index[i]]
        k = int(self.slice_index[i])
        if not self.context:
            return lr[k], hr[k]
        index = np.clip(np.arange(k - self.context, k + self.context + 1), 0, len(lr) - 1)
        return np.asarray(lr[index]), hr[k]


def _channels(array: np.ndarray) -> torch.Tensor:
    """``(H, W) -> (1, H, W)``; a ``(C, H, W)`` stack is kept as it is."""
    tensor = torch.from_numpy(array)
    return tensor[None] if tensor.ndim == 2 else tensor


class PatchDataset(Dataset):
    """Random square patches, one per slice per epoch, with optional flips/rot90.

    Returns ``(lr, hr)`` tensors of shape ``(C, patch, patch)`` and ``(1, patch, patch)``
    (``C = 2k + 1`` with 2.5D context, else 1). Randomness comes from
    torch's global generator, which Lightning seeds per worker.
    """

    def __init__(self, pairs: SlicePairs, *, patch: int, augment: bool = True) -> None:
        smallest = min(min(s) for s in pairs.shapes)
        if patch > smallest:
            raise ValueError(f"patch {patch} is larger than the smallest slice ({smallest} px)")
        self.pairs, self.patch, self.augment = pairs, patch, augment

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.pairs.pair(i)
        h, w = lr.shape[-2:]
        y = int(torch.randint(0, h - self.patch + 1, ()))
        x = int(torch.randint(0, w - self.patch + 1, ()))
        a = _channels(np.array(lr[..., y : y + self.patch, x : x + self.patch]))
        b = _channels(np.array(hr[y : y + self.patch, x : x + self.patch]))
        if self.augment:
            k = int(torch.randint(0, 4, ()))
            a, b = torch.rot90(a, k, (1, 2)), torch.rot90(b, k, (1, 2))
            if bool(torch.randint(0, 2, ())):
                a, b = a.flip(2), b.flip(2)
        return a.contiguous(), b.contiguous()


class SliceDataset(Dataset):
    """Whole slices (for validation/evaluation); ``max_slices`` evenly spaced if given."""

    def __init__(self, pairs: SlicePairs, *, max_slices: int | None = None) -> None:
        n = len(pairs)
        if max_slices is not None and n > max_slices:
            self.index = np.unique(np.linspace(0, n - 1, max_slices).round().astype(int))
        else:
            self.index = np.arange(n)
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.pairs.pair(int(self.index[i]))
        return _channels(np.array(lr)), _channels(np.array(hr))
