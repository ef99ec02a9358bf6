import json

import pytest

from microsr.data.manifest import read_manifest
from microsr.data.splits import check_splits, load_splits, make_splits
from microsr.errors import InputFileError, MicrosrError


def test_manifest_reads_and_resolves_relative_paths(pair_manifest):
    rows = read_manifest(pair_manifest)
    assert [r.specimen for r in rows] == ["s0", "s1", "s2", "s3", "s4"]
    assert all(r.lr_path.is_file() and r.hr_path.is_file() for r in rows)
    assert rows[3].site == "spine"


def test_manifest_missing_columns(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("specimen,lr_path\nA,a.tif\n")
    with pytest.raises(InputFileError, match=r"m\.csv.*missing column\(s\) site, hr_path"):
        read_manifest(p)


def test_manifest_missing_file_and_duplicates(tmp_path, pair_manifest):
    text = pair_manifest.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([text[0], text[1].replace("s0_lr.mha", "nope.mha")]) + "\n")
    with pytest.raises(InputFileError, match=r"specimen 's0': lr_path .*nope\.mha does not exist"):
        read_manifest(bad)
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join([text[0], text[1], text[1]]) + "\n")
    with pytest.raises(InputFileError, match="duplicate specimen id 's0'"):
        read_manifest(dup)


def test_splits_are_seeded_disjoint_and_stratified():
    specimens = {f"f{i:02d}": "femur" for i in range(71)} | {
        f"s{i:02d}": "spine" for i in range(71)
    }
    a, b = make_splits(specimens, seed=3), make_splits(specimens, seed=3)
    assert a == b and make_splits(specimens, seed=4) != a
    femur = {k: [s for s in a[k] if s.startswith("f")] for k in ("train", "val", "test")}
    assert [len(femur[k]) for k in ("train", "val", "test")] == [44, 12, 15]  # the paper's split
    assert any(s.startswith("s") for s in a["test"])
    check_splits(a, set(specimens))


def test_small_split_has_one_val_one_test():
    out = make_splits({"a": "x", "b": "x", "c": "x"}, seed=0)
    assert sorted(len(out[k]) for k in ("train", "val", "test")) == [1, 1, 1]
    with pytest.raises(MicrosrError, match="at least 3"):
        make_splits({"a": "x", "b": "x"}, seed=0)


def test_user_split_overlap_is_rejected(tmp_path):
    p = tmp_path / "splits.json"
    p.write_text(json.dumps({"train": ["a", "b"], "val": ["c"], "test": ["b"]}))
    with pytest.raises(InputFileError, match=r"\['b'\] are in both train and test"):
        load_splits(p, {"a", "b", "c"})
    p.write_text(json.dumps({"train": ["a"], "val": ["c"], "test": ["b"]}))
    assert load_splits(p, {"a", "b", "c"})["test"] == ["b"]


def test_rows_of_one_subject_share_a_split():
    """One bone under two acquisitions: never trained under one and tested under the other."""
    from microsr.data.splits import make_splits

    specimens = {f"p{i}_{a}": a for i in range(6) for a in ("1frame", "3frames")}
    subjects = {sid: sid.split("_")[0] for sid in specimens}
    splits = make_splits(specimens, seed=3, subjects=subjects)
    where = {sid: k for k in ("train", "val", "test") for sid in splits[k]}
    for i in range(6):
        assert where[f"p{i}_1frame"] == where[f"p{i}_3frames"]
    assert sorted(where) == sorted(specimens)
    assert all(splits[k] for k in ("train", "val", "test"))
