"""One model per site (and one pooled): dataset views over the shared prepared data, training."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from microsr.data.splits import SPLITS, Splits, write_splits
from microsr.errors import MicrosrError
from microsr.io.atomic import atomic_path
from microsr.study.config import POOLED, StudyConfig, StudyLayout
from microsr.training.train import train_or_reuse

log = logging.getLogger(__name__)


def model_names(sites: dict[str, str], *, pooled: bool) -> list[str]:
    """Sites in sorted order, then ``pooled`` when there are two sites or more."""
    names = sorted(set(sites.values()))
    return names + ([POOLED] if pooled and len(names) > 1 else [])


def model_splits(splits: Splits, sites: dict[str, str], model: str) -> Splits:
    """The global split restricted to the specimens of ``model``'s site (all for pooled)."""
    keep = (lambda sid: True) if model == POOLED else (lambda sid: sites.get(sid) == model)
    out = {k: [s for s in splits[k] if keep(s)] for k in SPLITS}
    for key in ("train", "val"):
        if not out[key]:
            raise MicrosrError(
                f"model {model!r}: no {key} specimen of this site in the split "
                f"(site has {sum(1 for s in sites.values() if s == model)} specimen(s); "
                "a site needs 3 or more to get its own train/val/test specimens)"
            )
    return splits.model_copy(update=out)


def model_dataset(layout: StudyLayout, model: str, splits: Splits, sites: dict[str, str]) -> Path:
    """``models/<model>/dataset``: the shared ``dataset.json``, the model's splits, data linked."""
    out = layout.model(model) / "dataset"
    if (out / "dataset.json").is_file() and (out / "splits.json").is_file():
        return out
    sub = model_splits(splits, sites, model)
    with atomic_path(out, directory=True) as tmp:
        shutil.copyfile(layout.dataset / "dataset.json", tmp / "dataset.json")
        write_splits(sub, tmp / "splits.json")
        target = os.path.relpath(layout.dataset / "specimens", start=out)
        try:
            (tmp / "specimens").symlink_to(target, target_is_directory=True)
        except OSError:  # no symlinks (some Windows set-ups): copy instead
            shutil.copytree(layout.dataset / "specimens", tmp / "specimens")
    return out


def train_model(
    layout: StudyLayout, model: str, dataset: Path, config: StudyConfig, *, progress: bool
) -> Path:
    """Train (or resume, or skip when complete) the model; returns its ``best.ckpt``."""
    cfg = config.train.model_copy(update={"device": config.device})
    log.info("model %s: in %s", model, layout.run(model))
    return train_or_reuse(dataset, layout.run(model), cfg, progress=progress)
