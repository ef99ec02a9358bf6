#!/usr/bin/env bash
# Where the SR gain on the LHDL slabs stops (issue 11's +2 dB target between LR centres), and
# why: bigger and longer-trained models, more context, test-time augmentation, and the LR
# scans a model could at best be given (the same acquisition without noise; HR's 2x block
# average). Run on an idle machine after step 2 of bench/readme_results.sh (about 50 min):
#
#   bench/lhdl_headroom.sh OUT_DIR      (OUT_DIR of bench/readme_results.sh)
#
# Every model trains on the LHDL demo's dataset (OUT_DIR/lhdl/dataset: 5 training slabs),
# seed 0, 64 px patches, batch 8; scored with `microsr evaluate` on its 2 test slabs.
set -euo pipefail
OUT=${1:?usage: bench/lhdl_headroom.sh OUT_DIR}
M=${MICROSR:-.venv/bin/microsr}  # e.g. MICROSR="python -m microsr" with PYTHONPATH=snapshot/src
PY=${PYTHON:-.venv/bin/python}
L="$OUT/lhdl"
H="$OUT/headroom"
mkdir -p "$H"
[ -e "$L/best.ckpt" ] || { echo "no $L/best.ckpt: run step 2 of bench/readme_results.sh first" >&2; exit 1; }
# shellcheck source=bench/_steps.sh
source "$(dirname "$0")/_steps.sh"  # step, todo
TEST=$($PY -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['test']))" \
  "$L/dataset/splits.json")

# score NAME CKPT LR_SUFFIX [predict options]: predict and evaluate every test slab
score() {
  local name=$1 ckpt=$2 lrs=$3; shift 3
  for s in $TEST; do
    local lr="$H/${s}_lr_${lrs}.mha"; [ "$lrs" = demo ] && lr="$L/data/${s}_lr.mha"
    [ -e "$H/eval_${name}_${s}/summary.json" ] && continue
    $M predict "$ckpt" "$lr" "$H/${s}_sr_${name}.mha" --overwrite "$@"
    $M evaluate "$H/eval_${name}_${s}" --hr "$L/data/${s}_hr.mha" --lr "$lr" \
      --sr "$H/${s}_sr_${name}.mha" --no-3d
  done
}
# variant NAME MINUTES [train options]: a model on the demo's dataset, scored on its LR scans
variant() {
  local name=$1 minutes=$2; shift 2
  step "model $name"
  [ -e "$H/run_$name/best.ckpt" ] || $M train "$L/dataset" "$H/run_$name" --max-minutes "$minutes" \
    --epochs 100000 --patch 64 --batch-size 8 --seed 0 "$@"
  score "$name" "$H/run_$name/best.ckpt" demo
}

step "the LHDL demo's model (4 min), and with test-time augmentation"
score demo "$L/best.ckpt" demo
score demo_tta "$L/best.ckpt" demo --tta
variant w16_12 12
variant w32_4 4 --width 32
variant w32_12 12 --width 32
variant context2 4 --context 2
variant lr3e-4 4 --learning-rate 3e-4
variant patch96 4 --patch 96

step "better LR scans: the same acquisition with 1e7 photons; HR's 2x block average"
for s in $TEST; do
  seed=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]['acquisition']['seed'])" \
    "$L/data/acquisitions.json" "$s")
  [ -e "$H/${s}_lr_clean.mha" ] || $M simulate "$L/data/${s}_hr.mha" "$H/${s}_lr_clean.mha" \
    --photons 1e7 --seed "$seed"
  [ -e "$H/${s}_lr_block.mha" ] || $PY - "$L/data/${s}_hr.mha" "$H/${s}_lr_block.mha" <<'EOF'
import sys

import numpy as np
import SimpleITK as sitk

hr = sitk.ReadImage(sys.argv[1])
a = sitk.GetArrayFromImage(hr).astype(np.float32)
z, y, x = (n // 2 * 2 for n in a.shape)
block = a[:z, :y, :x].reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(1, 3, 5))
lr = sitk.GetImageFromArray(block)
lr.SetSpacing(tuple(2 * s for s in hr.GetSpacing()))
# an LR voxel's centre is the centre of the 2 x 2 x 2 HR voxels it covers
lr.SetOrigin(tuple(o + s / 2 for o, s in zip(hr.GetOrigin(), hr.GetSpacing())))
lr.SetDirection(hr.GetDirection())
sitk.WriteImage(lr, sys.argv[2])
EOF
done
score demo_on_clean "$L/best.ckpt" clean
score demo_on_block "$L/best.ckpt" block

step "a model of the noise-free acquisition (1e7 photons, otherwise the demo's), scored on it"
if [ ! -e "$H/manifest.csv" ]; then
  { echo "specimen,site,lr_path,hr_path"
    for hr in "$L"/data/slab*_hr.mha; do echo "$(basename "$hr" _hr.mha),lhdl,,$(realpath "$hr")"; done
  } > "$H/manifest.csv"
fi
cat > "$H/clean.json" <<'EOF'
{"photons": [1e7, 1e7], "frames": [1, 1], "projections_ratio": [0.5, 0.5], "filters": ["ramp"],
 "psf_sigma_bins": [0, 0], "shift_hr_voxels": [0, 0], "ring_strength": [0, 0]}
EOF
[ -e "$H/ds_clean" ] || $M prepare "$H/manifest.csv" "$H/ds_clean" --randomize --ranges "$H/clean.json"
[ -e "$H/run_clean/best.ckpt" ] || $M train "$H/ds_clean" "$H/run_clean" --max-minutes 4 \
  --epochs 100000 --patch 64 --batch-size 8 --seed 0
score clean_on_clean "$H/run_clean/best.ckpt" clean
score clean_on_clean_lrgrid "$H/run_clean/best.ckpt" clean --z-grid lr
score demo_lrgrid "$L/best.ckpt" demo --z-grid lr

step "table"
$PY - "$H" $TEST <<'EOF'
import json
import sys
from pathlib import Path

h, slabs = Path(sys.argv[1]), sys.argv[2:]
names = sorted({p.name[5:].rsplit("_", 1)[0] for p in h.glob("eval_*")})
print("| run | LR (trilinear) | SR | gain | between LR centres: LR | SR | gain | gain at LR centres |")
print("|---|---|---|---|---|---|---|---|")
for name in names:
    d = [json.load(open(h / f"eval_{name}_{s}" / "summary.json")) for s in slabs]
    b = [x["slices_between_lr_centres"] for x in d]
    c = [x["slices_at_lr_centres"] for x in d]
    m = lambda rows, k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    gain = lambda rows: m(rows, "psnr_sr") - m(rows, "psnr_lr")  # noqa: E731
    print(
        f"| {name} | {m(d, 'psnr_lr'):.2f} / {m(d, 'ssim_lr'):.3f} | {m(d, 'psnr_sr'):.2f} / "
        f"{m(d, 'ssim_sr'):.3f} | {gain(d):+.2f} | {m(b, 'psnr_lr'):.2f} | {m(b, 'psnr_sr'):.2f} | "
        f"{gain(b):+.2f} | {gain(c):+.2f} |"
    )
EOF
