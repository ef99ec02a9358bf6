import json
from dataclasses import replace

import pytest

from microsr.data.manifest import read_manifest
from microsr.data.splits import Splits, check_splits, make_splits, read_splits, write_splits
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


def test_spacing_text_has_one_parser_for_options_and_manifest_cells(tmp_path, pair_manifest):
    """:func:`microsr.io.files.parse_spacing` reads ``--spacing`` and the manifest's spacing
    cells alike (one number or ``z,y,x``), and :func:`write_manifest` writes what it reads."""
    from microsr.data.manifest import write_manifest
    from microsr.io.files import format_spacing, parse_spacing

    assert parse_spacing("0.0195") == 0.0195 and parse_spacing(" ") is None
    assert parse_spacing("0.03, 0.02,0.02") == (0.03, 0.02, 0.02)
    assert parse_spacing(format_spacing((0.03, 0.02, 0.02))) == (0.03, 0.02, 0.02)
    for bad in ("a", "0.1,0.2", "-1", "nan"):
        with pytest.raises(MicrosrError, match=rf"--spacing '{bad}': give"):
            parse_spacing(bad)
    rows = read_manifest(pair_manifest)
    rows[0] = replace(rows[0], lr_spacing_mm=(0.04, 0.02, 0.02))
    rows[1] = replace(rows[1], hr_spacing_mm=0.01)
    again = read_manifest(write_manifest(rows, tmp_path / "again.csv"))
    assert again[0].lr_spacing_mm == (0.04, 0.02, 0.02) and again[1].hr_spacing_mm == 0.01
    text = (tmp_path / "again.csv").read_text().replace("0.04,0.02,0.02", "0.04,x,0.02")
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(InputFileError, match=r"bad\.csv.*specimen 's0': lr_spacing_mm '0\.04,x"):
        read_manifest(tmp_path / "bad.csv")


def test_spacing_tolerances_are_the_named_ones(caplog):
    """Every spacing comparison names a tolerance of :mod:`microsr.io.spacing`."""
    from microsr.data.prepare import training_spacings
    from microsr.io.spacing import SPACING_RATIO_RTOL, SPACING_SCALE_RTOL, spacing_off
    from microsr.pairing.geometry import scale_factor

    assert (SPACING_RATIO_RTOL, SPACING_SCALE_RTOL) == (0.01, 0.10)
    assert spacing_off(1.11, 1.0, SPACING_SCALE_RTOL) and not spacing_off(1.09, 1.0, 0.1)
    assert scale_factor((1, 0.0399, 0.0401), (1, 0.02, 0.02)) == 2  # within 1 %
    with pytest.raises(MicrosrError, match="must be an integer"):
        scale_factor((1, 0.0405, 0.04), (1, 0.02, 0.02))
    record = {"n_slices": 1, "lr_spacing_mm": [0.04] * 3}
    near = {
        "a": record | {"hr_spacing_mm": [0.02] * 3},
        "b": record | {"hr_spacing_mm": [0.0218] * 3},
    }
    assert training_spacings({"specimens": near})["hr_spacing_mm"] == pytest.approx([0.0209] * 3)
    far = near | {"b": record | {"hr_spacing_mm": [0.0225] * 3}}  # 12.5 % apart
    assert training_spacings({"specimens": far}) == {}
    assert "differ by more than 10 %" in caplog.text


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
        read_splits(p, {"a", "b", "c"})
    p.write_text(json.dumps({"train": ["a"], "val": ["c"], "test": ["b"]}))
    assert read_splits(p, {"a", "b", "c"}).test == ["b"]


def test_splits_json_is_one_typed_record_with_one_reader_and_writer(tmp_path):
    """``splits.json`` reads as :class:`Splits` (written back: the same text), whatever
    wrote it; a bad file is an error naming the file and the field."""
    made = make_splits({"a": "x", "b": "x", "c": "x", "d": "x"}, seed=5)
    assert isinstance(made, Splits) and made.seed == 5 and made.fold is None
    path = write_splits(made, tmp_path / "splits.json")
    assert list(json.loads(path.read_text())) == ["seed", "train", "val", "test"]
    assert read_splits(path) == made and read_splits(path, made.specimens()) == made
    user = Splits(train=["a"], val=["b"], test=["c"])  # a user's own file: no seed
    assert "seed" not in write_splits(user, tmp_path / "user.json").read_text()
    assert user["val"] == user.val == ["b"]
    with pytest.raises(KeyError, match="not a split"):
        user["seed"]
    for bad, problem in (
        ({"train": ["a"], "val": []}, "test: Field required"),
        ({"train": [], "val": ["a"], "test": ["b"]}, "the train split is empty"),
        ({"train": ["a"], "val": ["b"], "test": ["c"], "tset": []}, "tset: Extra inputs"),
        ({"train": "a", "val": ["b"], "test": ["c"]}, "train: Input should be a valid list"),
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(InputFileError, match=rf"splits\.json.*{problem}"):
            read_splits(path)
    path.write_text("{")
    with pytest.raises(InputFileError, match=r"splits\.json.*cannot read splits JSON"):
        read_splits(path)


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
