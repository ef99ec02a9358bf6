"""One model per site (and one pooled): dataset views over the shared prepared data, training."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from microsr.errors import MicrosrError
from microsr.io.atomic import atomic_path
from microsr.study.config import POOLED, StudyConfig, StudyLayout
from microsr.training.train import train

log = logging.getLogger(__name__)


def model_names(sites: dict[str, str], *, pooled: bool) -> list[str]:
    """Sites in sorted order, then ``pooled`` when there are two sites or more."""
    names = sorted(set(sites.values()))
    return names + ([POOLED] if pooled and len(names) > 1 else [])


def model_splits(splits: dict, sites: dict[str, str], model: str) -> dict:
    """The global split restricted to the specimens of ``model``'s site (all for pooled)."""
    keep = (lambda sid: True) if model == POOLED else (lambda sid: sites.get(sid) == model)
    out = {k: [s for s in splits[k] if keep(s)] for k in ("train", "val", "test")}
    for key in ("train", "val"):
        if not out[key]:
            raise MicrosrError(
                f"model {model!r}: no {key} specimen of this site in the split "
                f"(site has {sum(1 for s in sites.values() if s == model)} specimen(s); "
                "a site needs 3 or more to get its own train/val/test specimens)"
            )
    return {"seed": splits.get("seed")} | out


def model_dataset(layout: StudyLayout, model: str, splits: dict, sites: dict[str, str]) -> Path:
    """``models/<model>/dataset``: the shared ``dataset.json``, the model's splits, data linked."""
    out = layout.model(model) / "dataset"
    if (out / "dataset.json").is_file() and (out / "splits.json").is_file():
        return out
    sub = model_splits(splits, sites, model)
    with atomic_path(out, directory=True) as tmp:
        shutil.copyfile(layout.dataset / "dataset.json", tmp / "dataset.json")
        (tmp / "splits.json").write_text(json.dumps(sub, indent=2))
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
    run = layout.run(model)
    done = run / "complete.json"
    if done.is_file():
        best = Path(json.loads(done.read_text())["best"])
        if best.is_file():
            log.info("model %s: trained already (%s)", model, best)
            return best
    resume = (run / "last.ckpt").is_file()
    cfg = config.train.model_copy(update={"device": config.device})
    log.info("model %s: %s training in %s", model, "resuming" if resume else "starting", run)
    result = train(dataset, run, cfg, resume=resume, progress=progress)
    with atomic_path(done) as tmp:
        tmp.write_text(json.dumps({"best": str(result.best), "last": str(result.last)}))
    return result.best
