"""3D morphometry and ``evaluate`` from 128^3 to 512^3 (1024^3 with ``--big``): the
whole-volume code of a baseline commit against this tree's block-wise code.

Every case runs in its own process (peak RSS = ``ru_maxrss``). The baseline is the package
as it was at ``--base`` (default 9595713, the last commit before block-wise morphometry),
extracted with ``git archive`` into a temporary folder and put first on ``PYTHONPATH``;
each child reports which ``microsr`` it imported.

Structure: a trabecular-like periodic sheet structure (a band of smoothed, wrapped noise,
tiled to the size; 20 um voxels; BV/TV ~0.3, plates ~5 voxels thick, marrow spaces ~15),
stored as a zarr array in 64^3 chunks, so the block-wise code reads it block by block.

* ``thickness``: mean local thickness of bone (Tb.Th) and of marrow (Tb.Sp) over the
  whole box: baseline ``local_thickness`` on the whole array vs
  :func:`microsr.morphometry.thickness.thickness_sum` (``--block``, the CPU budget's
  threads). Both values are printed: they agree to the radius step (see the notes of
  :mod:`microsr.morphometry.thickness` for the one tie tolerance that changed).
* ``evaluate``: ``evaluate_files(HR, LR, SR)`` end to end (PSNR, SSIM, BA/TA, 3D features of
  LR, SR and HR). HR is the structure in grey values (.mha), LR its 2x block average with
  noise, SR the prediction of a small random model (width 8, depth 2) on ``--device``
  (predict time shown apart, not in the evaluate time).

Expect the baseline to be slow: 494 x 256 x 256 took ~13 min to evaluate on 2 cores;
``--base-max`` limits the sizes it runs at.

Usage: python bench/bench_morphometry.py [--sizes 128,256,512] [--big] [--device cpu]
       [--block 128] [--base 9595713] [--base-max 512] [--only thickness|evaluate]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
from _common import machine, peak_rss_mb, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
SPACING = 0.02  # mm


def structure(n: int, *, seed: int = 0, period: int = 128) -> np.ndarray:
    """``(n, n, n)`` bool sheets: a band of wrapped smoothed noise of side ``period``, tiled."""
    from scipy.ndimage import gaussian_filter

    p = min(n, period)
    field = gaussian_filter(
        np.random.default_rng(seed).standard_normal((p, p, p)).astype(np.float32), 3.0,
        mode="wrap",
    )  # fmt: skip
    bone = np.abs(field) < 0.35 * field.std()
    reps = -(-n // p)
    return np.tile(bone, (reps, reps, reps))[:n, :n, :n]


def write_inputs(tmp: Path, n: int, device: str) -> dict:
    """The zarr mask and the HR/LR/SR files of size ``n``; predict time of SR."""
    import zarr

    from microsr.inference.predict import predict_file
    from microsr.io import write_volume
    from microsr.models.factory import ModelConfig
    from microsr.volume import Volume

    bone = structure(n)
    z = zarr.open_array(tmp / f"bone{n}.zarr", mode="w", shape=bone.shape, chunks=(64,) * 3,
                        dtype=bool)  # fmt: skip
    z[:] = bone
    rng = np.random.default_rng(1)
    hr = np.where(bone, np.float32(1000), np.float32(100))
    hr += rng.normal(0, 30, hr.shape).astype(np.float32)
    del bone
    hr_path = write_volume(Volume(hr, (SPACING,) * 3), tmp / f"hr{n}.mha")
    lr = hr.reshape(n // 2, 2, n // 2, 2, n // 2, 2).mean(axis=(1, 3, 5), dtype=np.float32)
    del hr
    origin = (SPACING / 2,) * 3
    lr_path = write_volume(Volume(lr, (2 * SPACING,) * 3, origin), tmp / f"lr{n}.mha")
    del lr
    ckpt = write_checkpoint(tmp / "m.ckpt", ModelConfig(width=8, depth=2))
    t0 = time.perf_counter()
    predict_file(ckpt, lr_path, tmp / f"sr{n}.mha", device=device, progress=False)
    return {
        "zarr": str(tmp / f"bone{n}.zarr"), "hr": str(hr_path), "lr": str(lr_path),
        "sr": str(tmp / f"sr{n}.mha"), "predict_s": time.perf_counter() - t0,
    }  # fmt: skip


def child_thickness(which: str, path: str, block: int) -> dict:
    import zarr

    if which == "base":  # imported before the clock starts (skimage, edt)
        from microsr.morphometry.structure import local_thickness
    else:
        from microsr.morphometry.thickness import mean_local_thickness
    z = zarr.open_array(path, mode="r")
    spacing = (SPACING,) * 3
    out = {"import_rss_mb": peak_rss_mb()}
    for key, invert in (("tb_th", False), ("tb_sp", True)):
        t0 = time.perf_counter()
        if which == "base":  # the whole mask in memory, as the baseline needs it
            mask = np.asarray(z[:]) != invert
            value = float(local_thickness(mask, spacing)[mask].mean())
            del mask
        else:  # read block by block from the zarr store

            def read(box, invert=invert):
                return np.asarray(z[box]) != invert

            value = mean_local_thickness(read, spacing, shape=z.shape, block=block)
        out[f"{key}_mm"], out[f"{key}_s"] = value, time.perf_counter() - t0
    return out


def child_evaluate(hr: str, lr: str, sr: str) -> dict:
    import itk  # loads lazily, for many seconds: before the clock starts

    itk.BoneMorphometryFeaturesFilter  # noqa: B018
    itk.image_from_array(np.zeros((2, 2, 2), np.float32))  # loads the NumPy bridge (and dask)

    from microsr.evaluation import evaluate_files

    imported = peak_rss_mb()
    t0 = time.perf_counter()
    (scores,) = evaluate_files(hr, lr, sr)
    seconds = time.perf_counter() - t0
    f = scores.summary["features_3d"]["hr"]
    return {"seconds": seconds, "tb_th_lt_mm": f["tb_th_lt_mm"], "tb_sp_lt_mm": f["tb_sp_lt_mm"],
            "import_rss_mb": imported}  # fmt: skip


def _rss(r: dict) -> str:
    """Peak RSS and, in brackets, its growth over the RSS after the imports (MiB)."""
    return f"{r['peak_rss_mb']:9.0f} ({r['peak_rss_mb'] - r['import_rss_mb']:5.0f})"


def run_case(base_src: Path | None, *args: str) -> dict:
    """One child process (the baseline's package first on the path when ``base_src``)."""
    env = dict(os.environ, MICROSR_PROGRESS="off")
    if base_src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(base_src), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True,
        text=True, env=env,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def extract_base(commit: str, into: Path) -> Path:
    """``src/`` of ``commit`` (git archive, the working tree untouched) under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--big", action="store_true", help="also 1024^3 (~40 GB of disk, hours)")
    ap.add_argument("--device", default="cpu", help="device of the SR prediction (cpu, cuda)")
    ap.add_argument("--block", type=int, default=128, help="block edge of the new code")
    ap.add_argument("--base", default="9595713", help="baseline commit (whole-volume code)")
    ap.add_argument("--base-max", type=int, default=512, help="largest size the baseline runs")
    ap.add_argument("--only", choices=("thickness", "evaluate"))
    ap.add_argument("--child", nargs="+")
    a = ap.parse_args()
    if a.child:
        import microsr

        kind, *rest = a.child
        if kind == "thickness":
            r = child_thickness(rest[0], rest[1], int(rest[2]))
        else:
            r = child_evaluate(*rest)
        print(json.dumps(r | {"peak_rss_mb": peak_rss_mb(), "microsr": microsr.__file__}))
        return
    sizes = [int(s) for s in a.sizes.split(",")] + ([1024] if a.big else [])
    print(f"machine: {machine()}")
    print(f"baseline: {a.base} (whole volume); new: this tree, blocks of {a.block}^3")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "base").mkdir()
        base_src = extract_base(a.base, tmp / "base")
        rows = []
        for n in sizes:
            inputs = write_inputs(tmp, n, a.device)
            print(f"\n{n}^3 ({n**3 / 1e6:.0f} M voxels): SR predicted on {a.device} in "
                  f"{inputs['predict_s']:.1f} s")  # fmt: skip
            runs = [("new", None)] + ([("base", base_src)] if n <= a.base_max else [])
            for which, src in runs:
                if a.only != "evaluate":
                    r = run_case(src, "thickness", which, inputs["zarr"], str(a.block))
                    rows.append(("thickness", n, which, r["tb_th_s"] + r["tb_sp_s"], r))
                    print(f"  local thickness {which:4s}  Tb.Th {r['tb_th_s']:8.1f} s "
                          f"({r['tb_th_mm']:.5f} mm)  Tb.Sp {r['tb_sp_s']:8.1f} s "
                          f"({r['tb_sp_mm']:.5f} mm)  peak RSS {r['peak_rss_mb']:7.0f} MiB  "
                          f"[{r['microsr']}]")  # fmt: skip
                if a.only != "thickness":
                    r = run_case(src, "evaluate", inputs["hr"], inputs["lr"], inputs["sr"])
                    rows.append(("evaluate", n, which, r["seconds"], r))
                    print(f"  evaluate        {which:4s}  {r['seconds']:8.1f} s  peak RSS "
                          f"{r['peak_rss_mb']:7.0f} MiB  HR Tb.Th {r['tb_th_lt_mm']:.5f} mm  "
                          f"Tb.Sp {r['tb_sp_lt_mm']:.5f} mm")  # fmt: skip
            for f in tmp.glob(f"*{n}.*"):
                subprocess.run(["rm", "-rf", str(f)], check=True)
        print("\nsummary (seconds; speed-up = baseline / new; peak RSS MiB, and in brackets its "
              "growth over the RSS after the imports)")  # fmt: skip
        print(f"{'step':10s}{'size':>6s}{'new s':>10s}{'base s':>10s}{'speed-up':>10s}"
              f"{'new RSS (growth)':>18s}{'base RSS (growth)':>18s}")  # fmt: skip
        for step in ("thickness", "evaluate"):
            for n in sizes:
                got = {w: (s, r) for st, m, w, s, r in rows if st == step and m == n}
                if "new" not in got:
                    continue
                new_s, new_r = got["new"]
                base = got.get("base")
                print(f"{step:10s}{n:6d}{new_s:10.1f}"
                      + (f"{base[0]:10.1f}{base[0] / new_s:10.2f}" if base else f"{'-':>10s}{'-':>10s}")
                      + _rss(new_r) + (_rss(base[1]) if base else f"{'-':>16s}"))  # fmt: skip


if __name__ == "__main__":
    main()
