"""PyTorch datasets over a prepared dataset folder (memory-mapped, streamed from disk).

A pair is one HR slice and its input: the LR volume interpolated along z at the slice's
fractional LR index ``t`` (:func:`microsr.pairing.upsample.sample_z`), with ``k`` LR slices of
context each side (``t - k .. t + k``) for a 2.5D model. Both are normalised here, with the
dataset's :class:`~microsr.data.normalize.NormalizationConfig` (the same functions as
prediction).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from microsr.data.normalize import normalize
from microsr.data.records import DatasetInfo
from microsr.data.specimen import lr_draw_name
from microsr.errors import MicrosrError
from microsr.pairing.upsample import sample_z, z_span


def _open(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Memory-map a prepared ``.npy``; a missing, truncated or misshapen file is one error."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise MicrosrError(
            f"{path}: prepared array is missing or damaged ({exc}); prepare the dataset again"
        ) from None
    if array.shape != shape:
        raise MicrosrError(
            f"{path}: prepared array has shape {array.shape}, dataset.json says {shape}; "
            "prepare the dataset again"
        )
    return array


class SlicePairs:
    """Index of ``(specimen, HR slice)`` pairs across specimens of a prepared dataset.

    Parameters
    ----------
    dataset_dir, info
        The prepared folder and its ``dataset.json`` (:func:`~microsr.data.prepare.load_dataset_info`).
    specimens
        Specimen ids to index (e.g. one split).
    context
        ``k``: LR slices of context each side of the interpolated centre slice.
    draws
        Index every LR scan of a specimen (``lr.npy``, ``lr_1.npy``...: simulated draws,
        ``prepare --draws``) as its own pairs, for training; otherwise only the first.

    The ``.npy`` files are checked when the index is built and opened lazily with
    ``mmap_mode="r"`` (once per worker process), so only the requested slices are read.
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        info: dict | DatasetInfo,
        specimens: list[str],
        *,
        context: int = 0,
        draws: bool = False,
    ) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        self.dataset_dir = Path(dataset_dir)
        self.context = context
        self.specimens = list(specimens)
        typed = DatasetInfo.of(info)
        self.normalization = typed.normalization
        meta = [typed.specimens[s] for s in self.specimens]
        self.n_draws = [m.n_lr_draws if draws else 1 for m in meta]
        counts = [m.n_slices for m in meta]
        # One entry per (specimen, LR draw, HR slice).
        per = [(i, d, c) for i, (c, nd) in enumerate(zip(counts, self.n_draws)) for d in range(nd)]
        self.spec_index = np.repeat([i for i, _, _ in per], [c for *_, c in per]).astype(int)
        self.draw_index = np.repeat([d for _, d, _ in per], [c for *_, c in per]).astype(int)
        self.slice_index = (
            np.concatenate([np.arange(c) for *_, c in per]) if per else np.zeros(0, int)
        )
        self.shapes = [tuple(m.crop_yxhw[2:]) for m in meta]
        self.lr_t = [np.asarray(m.lr_t, np.float64) for m in meta]
        self._expected = [
            ((m.n_lr_slices, *m.crop_yxhw[2:]), (m.n_slices, *m.crop_yxhw[2:])) for m in meta
        ]
        self._arrays  # noqa: B018 - check every file now, before any training starts

    def __len__(self) -> int:
        return len(self.spec_index)

    @cached_property
    def _arrays(self) -> list[tuple[list[np.ndarray], np.ndarray]]:
        root = self.dataset_dir / "specimens"
        return [
            (
                [_open(root / s / lr_draw_name(d), lr_shape) for d in range(n)],
                _open(root / s / "hr.npy", hr_shape),
            )
            for s, n, (lr_shape, hr_shape) in zip(self.specimens, self.n_draws, self._expected)
        ]

    def hr_slices(self, spec: int) -> np.ndarray:
        """Specimen ``spec``'s paired HR slices ``(N, H, W)``, memory-mapped, in its units."""
        return self._arrays[spec][1]

    def raw_pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``i``-th pair in the scan's units: LR ``(2k + 1, H, W)``, HR ``(H, W)``.

        Channel ``k`` is the LR volume at the HR slice's z (the trilinear baseline).
        """
        spec, k = int(self.spec_index[i]), int(self.slice_index[i])
        lrs, hr = self._arrays[spec]
        lr = lrs[int(self.draw_index[i])]
        t = self.lr_t[spec][k] + np.arange(-self.context, self.context + 1)
        first, stop = z_span(t, len(lr))
        return sample_z(np.asarray(lr[first:stop]), t, n=len(lr), first=first), np.asarray(hr[k])

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``i``-th pair normalised to [0, 1]: LR ``(2k + 1, H, W)``, HR ``(H, W)``."""
        lr, hr = self.raw_pair(i)
        return normalize(lr, self.normalization, role="lr"), normalize(
            hr, self.normalization, role="hr"
        )


def _channels(array: np.ndarray) -> torch.Tensor:
    """``(H, W) -> (1, H, W)``; a ``(C, H, W)`` stack is kept as it is."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor[None] if tensor.ndim == 2 else tensor


class PatchDataset(Dataset):
    """Random square patches, one per pair per epoch (per HR slice and LR draw), with
    optional flips/rot90.

    Returns ``(lr, hr)`` tensors of shape ``(C, patch, patch)`` and ``(1, patch, patch)``
    (``C = 2k + 1``). Randomness comes from this dataset's own generator, seeded with
    ``seed`` and the DataLoader worker's id (never torch's global generator), so a run's
    patches depend only on its seed and worker count.
    """

    def __init__(
        self, pairs: SlicePairs, *, patch: int, augment: bool = True, seed: int = 0
    ) -> None:
        smallest = min(min(s) for s in pairs.shapes)
        if patch > smallest:
            raise ValueError(f"patch {patch} is larger than the smallest slice ({smallest} px)")
        self.pairs, self.patch, self.augment, self.seed = pairs, patch, augment, seed
        self._rngs: dict[int, np.random.Generator] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def _rng(self) -> np.random.Generator:
        info = get_worker_info()
        worker = -1 if info is None else info.id
        if worker not in self._rngs:
            self._rngs[worker] = np.random.default_rng([self.seed, worker + 1])
        return self._rngs[worker]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.pairs.pair(i)
        h, w = lr.shape[-2:]
        rng = self._rng()
        y, x = int(rng.integers(0, h - self.patch + 1)), int(rng.integers(0, w - self.patch + 1))
        a = _channels(lr[..., y : y + self.patch, x : x + self.patch])
        b = _channels(hr[y : y + self.patch, x : x + self.patch])
        if self.augment:
            k = int(rng.integers(0, 4))
            a, b = torch.rot90(a, k, (1, 2)), torch.rot90(b, k, (1, 2))
            if rng.integers(0, 2):
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
        return _channels(lr), _channels(hr)
