"""Specimen-level train/validation/test splits (never slice-level).

Saved as ``splits.json`` keyed by specimen id, as nnU-Net's ``splits_final.json``::

    {"seed": 0, "train": ["f01", ...], "val": [...], "test": [...]}

A user may supply their own file with the same keys. :class:`Splits` is the typed record;
:func:`read_splits` / :func:`write_splits` its one reader and writer (a cross-validation's
``folds.json``: :func:`read_folds` / :func:`write_folds`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, model_validator

from microsr.errors import InputFileError, MicrosrError

SPLITS = ("train", "val", "test")
# The paper's femur split is 44/12/15 of 71 specimens.
DEFAULT_FRACTIONS = (0.62, 0.17, 0.21)


class Splits(BaseModel):
    """``splits.json``: the specimen ids of each split (disjoint; ``train`` not empty).

    Attributes
    ----------
    seed
        Seed that made the split; ``None``: a user's own file.
    fold
        Cross-validation fold (1-based) the split is, if any.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int | None = None
    fold: int | None = None
    train: list[str]
    val: list[str]
    test: list[str]

    @model_validator(mode="after")
    def _disjoint(self) -> Splits:
        # No specimen is in two splits: the rule that keeps test bones out of training, a
        # raise (not an assert), so it holds under `python -O` too.
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = set(self[a]) & set(self[b])
            if both:
                raise ValueError(f"specimen(s) {sorted(both)} are in both {a} and {b}")
        if not self.train:
            raise ValueError("the train split is empty")
        return self

    def __getitem__(self, split: str) -> list[str]:
        """The ids of the split named ``split`` (``train``, ``val`` or ``test``)."""
        if split not in SPLITS:
            raise KeyError(f"{split!r}: not a split (use one of {', '.join(SPLITS)})")
        return getattr(self, split)

    def specimens(self) -> set[str]:
        """Every specimen of the three splits."""
        return set(self.train) | set(self.val) | set(self.test)

    def to_json(self) -> dict:
        """The record as written (no ``seed`` / ``fold`` when it has none)."""
        return self.model_dump(mode="json", exclude_none=True)


def _typed(splits: dict | Splits, source: str | Path) -> Splits:
    if isinstance(splits, Splits):
        return splits
    try:
        return Splits.model_validate(splits)
    except pydantic.ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(x) for x in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        raise InputFileError(source, f"{where}: {message}" if where else message) from None


def check_splits(
    splits: dict | Splits, specimens: set[str], *, source: str | Path = "splits"
) -> Splits:
    """``splits`` typed (disjoint, train not empty), checked to cover exactly ``specimens``.

    Raises
    ------
    InputFileError
        A split missing or overlapping another, an unknown specimen, one in no split.
    """
    splits = _typed(splits, source)
    listed = splits.specimens()
    if listed - specimens:
        raise InputFileError(source, f"unknown specimen(s) {sorted(listed - specimens)}")
    if specimens - listed:
        raise InputFileError(source, f"specimen(s) {sorted(specimens - listed)} are in no split")
    return splits


def read_splits(path: str | Path, specimens: set[str] | None = None) -> Splits:
    """Read a ``splits.json`` (a prepared dataset's or a user's); with ``specimens``, check
    that it covers exactly those.

    Raises
    ------
    InputFileError
        Unreadable, not JSON, or not valid splits (the message names the file).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"cannot read splits JSON ({exc})") from None
    if specimens is None:
        return _typed(raw, path)
    return check_splits(raw, specimens, source=path)


def write_splits(splits: Splits, path: str | Path) -> Path:
    """Write ``splits`` as ``splits.json`` text to ``path`` (the caller makes it atomic)."""
    path = Path(path)
    path.write_text(json.dumps(splits.to_json(), indent=2))
    return path


def read_folds(path: str | Path) -> list[Splits]:
    """Read a cross-validation's ``folds.json`` (a list of splits, one per fold)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(path, f"cannot read folds JSON ({exc})") from None
    if not isinstance(raw, list):
        raise InputFileError(path, "not a list of splits")
    return [_typed(fold, path) for fold in raw]


def write_folds(folds: list[Splits], path: str | Path) -> Path:
    """Write ``folds`` as ``folds.json`` text to ``path`` (the caller makes it atomic)."""
    path = Path(path)
    path.write_text(json.dumps([fold.to_json() for fold in folds], indent=2))
    return path


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    if n < 3:
        raise MicrosrError(f"need at least 3 specimens for a train/val/test split, got {n}")
    n_test = max(1, round(fractions[2] * n))
    n_val = max(1, round(fractions[1] * n))
    n_train = n - n_test - n_val
    if n_train < 1:
        n_train, n_val, n_test = n - 2, 1, 1
    return n_train, n_val, n_test


def make_splits(
    specimens: dict[str, str],
    *,
    seed: int,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    subjects: dict[str, str] | None = None,
) -> Splits:
    """Split specimens into train/val/test, per site (stratified), reproducibly.

    Parameters
    ----------
    specimens
        Mapping specimen id -> site.
    seed
        Seed of the shuffle (recorded in the result).
    fractions
        Target train/val/test fractions (rounded; at least one val and one test specimen).
        Sites with fewer than 3 specimens are pooled into one group (or, if the
        pool is still under 3, split together with the largest site).
    subjects
        Optional mapping specimen id -> physical specimen (the manifest's ``subject``
        column): rows of one subject (e.g. one bone scanned with two protocols) always
        land in the same split, so no test bone is ever trained on under another
        acquisition. Subjects are split as units, stratified by their first row's site.
    """
    if subjects:
        return _split_subjects(specimens, subjects, seed=seed, fractions=fractions)
    rng = np.random.default_rng(seed)
    by_site: dict[str, list[str]] = {}
    for sid, site in sorted(specimens.items()):
        by_site.setdefault(site, []).append(sid)
    small = [s for s, ids in by_site.items() if len(ids) < 3]
    pooled = [i for s in small for i in by_site.pop(s)]
    if len(pooled) >= 3 or (pooled and not by_site):
        by_site["__pooled__"] = pooled
    elif pooled:  # too few to split on their own: split them with the largest site
        by_site[max(by_site, key=lambda s: len(by_site[s]))].extend(pooled)
    out: dict = {"seed": int(seed), "train": [], "val": [], "test": []}
    for site in sorted(by_site):
        ids = list(by_site[site])
        rng.shuffle(ids)
        n_train, n_val, _ = _counts(len(ids), fractions)
        out["train"] += sorted(ids[:n_train])
        out["val"] += sorted(ids[n_train : n_train + n_val])
        out["test"] += sorted(ids[n_train + n_val :])
    return check_splits(out, set(specimens))


def _split_subjects(specimens, subjects, *, seed, fractions) -> Splits:
    members: dict[str, list[str]] = {}
    for sid in sorted(specimens):
        members.setdefault(subjects.get(sid) or sid, []).append(sid)
    units = {subject: specimens[ids[0]] for subject, ids in members.items()}
    by_unit = make_splits(units, seed=seed, fractions=fractions)
    out = {"seed": by_unit.seed}
    for key in SPLITS:
        out[key] = sorted(sid for unit in by_unit[key] for sid in members[unit])
    return check_splits(out, set(specimens))


def make_folds(
    subjects: dict[str, str], *, k: int, seed: int, val_fraction: float = 0.2
) -> list[Splits]:
    """Subject-level K-fold cross-validation splits (nnU-Net's 5-fold CV, by subject).

    The subjects are shuffled (seeded) and dealt round-robin into ``k`` test groups; fold
    ``i`` tests on group ``i`` and trains on the other subjects, of which
    ``max(1, round(val_fraction * n))`` (seeded) are held out for validation. Every subject
    is tested exactly once, and no subject is in two splits of one fold.

    Parameters
    ----------
    subjects
        Mapping specimen id -> subject (donor); a specimen with an empty subject is its own.
    k
        Number of folds, 2 <= k <= number of subjects.
    seed
        Seed of the shuffles (recorded in each fold).
    val_fraction
        Share of each fold's training subjects used for validation.

    Returns
    -------
    list of Splits
        One per fold (``seed``, ``fold``; ``train``, ``val``, ``test``: specimen ids).

    Raises
    ------
    MicrosrError
        ``k`` < 2, more folds than subjects, or too few subjects for train + val + test.
    """
    members: dict[str, list[str]] = {}
    for sid in sorted(subjects):
        members.setdefault(subjects[sid] or sid, []).append(sid)
    units = sorted(members)
    if k < 2:
        raise MicrosrError(f"--folds {k}: cross-validation needs 2 folds or more")
    if k > len(units):
        raise MicrosrError(
            f"--folds {k} is more than the {len(units)} subjects ({', '.join(units)}): "
            "every fold needs its own test subject; use --folds "
            f"{len(units)} or fewer (or give each specimen its own 'subject')"
        )
    if len(units) - -(-len(units) // k) < 2:
        raise MicrosrError(
            f"--folds {k} with {len(units)} subjects leaves fewer than 2 training subjects "
            "per fold (one to train on, one to validate); use more folds or more subjects"
        )
    rng = np.random.default_rng(seed)
    order = [str(u) for u in rng.permutation(units)]
    groups = [sorted(order[i::k]) for i in range(k)]
    folds = []
    for i, test in enumerate(groups):
        rest = sorted(u for u in units if u not in test)
        n_val = min(max(1, round(val_fraction * len(rest))), len(rest) - 1)
        val = sorted(str(u) for u in np.random.default_rng([seed, i]).choice(rest, n_val, False))
        ids = {
            "test": test,
            "val": val,
            "train": [u for u in rest if u not in val],
        }
        fold = {"seed": int(seed), "fold": i + 1}
        fold |= {key: sorted(s for u in ids[key] for s in members[u]) for key in SPLITS}
        folds.append(check_splits(fold, set(subjects)))
    return folds
