#!/usr/bin/env bash
# Fine-tuning on a few paired specimens of an unseen acquisition (issue 21, item 4): the LHDL
# demo's model (trained on the default protocol) fine-tuned with `train --init` on 1 and on 2
# paired slabs, against the same network trained from scratch on the same slabs with the same
# epoch budget, against no fine-tuning; scored on the held-out test slabs. Run on an idle
# machine after step 2 of bench/readme_results.sh (LHDL = its OUT_DIR/lhdl):
#
#   bench/finetune.sh OUT_DIR LHDL_DEMO_DIR
#
# LHDL_DEMO_DIR: the output of `microsr demo LHDL --data .../lhdl_3155_D_4_bc --spacing 0.0195
# --minutes 4` (read only: best.ckpt, data/slab*_hr.mha and dataset/splits.json).
# The unseen acquisition: Hann filter, 800 photons, PSF 1.0 LR bins (the demo's: ramp, 5000
# photons, no PSF). The "real" pairs are simulated with it: the first (and second) training
# slab of the demo's split for training, its validation slab for the validation loss. Every
# model is scored with its LAST checkpoint (CKPT=last: a fixed budget, no selection on the
# validation slab; CKPT=best to select), on the demo's test slabs (never trained on by any
# model) simulated with the same acquisition. Table: mean PSNR / SSIM with 95 % CIs per model,
# and paired per-slice contrasts (fine-tuned - from scratch, fine-tuned - not fine-tuned)
# with 95 % CIs; also written to OUT_DIR/table.md. Resumable (existing outputs are skipped).
# EPOCHS (default 150 for every model: one epoch draws one patch per training slice, so a
# 1-slab epoch is a fifth of the demo's); FT_LR (default 3e-4) the fine-tuning learning rate,
# LR (default 1e-3, train's default) the from-scratch one.
set -euo pipefail
OUT=${1:?usage: bench/finetune.sh OUT_DIR LHDL_DEMO_DIR}
LHDL=${2:?usage: bench/finetune.sh OUT_DIR LHDL_DEMO_DIR}
M=${MICROSR:-.venv/bin/microsr}  # e.g. MICROSR="python -m microsr" with PYTHONPATH=snapshot/src
PY=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-150}
FT_LR=${FT_LR:-3e-4}
LR=${LR:-1e-3}
CKPT=${CKPT:-last}
[ -e "$LHDL/best.ckpt" ] || { echo "no $LHDL/best.ckpt: run the LHDL demo first" >&2; exit 1; }
mkdir -p "$OUT"
# shellcheck source=bench/_steps.sh
source "$(dirname "$0")/_steps.sh"  # step, todo, split_ids
split() { split_ids "$LHDL/dataset/splits.json" "$1"; }
TEST=$(split test)
read -r -a TRAIN_SLABS <<< "$(split train)"
VAL=$(split val); VAL=${VAL%% *}

cat > "$OUT/unseen.json" <<'EOF'
{"format": "microsr-acquisition", "version": 2,
 "acquisition": {"filter_name": "hann", "photons": 800, "psf_sigma_bins": 1.0}}
EOF

step "the held-out test slabs, simulated with the unseen acquisition"
for s in $TEST; do
  todo "$OUT/${s}_lr.mha" && $M simulate "$LHDL/data/${s}_hr.mha" "$OUT/${s}_lr.mha" \
    --acquisition "$OUT/unseen.json" --seed 7
done

# dataset N: the first N training slabs (train) and the validation slab (val), HR only,
# simulated with the unseen acquisition by prepare
for n in 1 2; do
  step "datasets of $n paired slab(s)"
  {
    echo "specimen,site,lr_path,hr_path"
    for s in "${TRAIN_SLABS[@]:0:$n}" "$VAL"; do echo "$s,lhdl,,$(realpath "$LHDL/data/${s}_hr.mha")"; done
  } > "$OUT/manifest$n.csv"
  $PY - "$OUT/splits$n.json" "$VAL" "${TRAIN_SLABS[@]:0:$n}" <<'EOF'
import json, sys
out, val, *train = sys.argv[1:]
json.dump({"train": train, "val": [val], "test": []}, open(out, "w"), indent=2)
EOF
  todo "$OUT/ds$n" && $M prepare "$OUT/manifest$n.csv" "$OUT/ds$n" --acquisition "$OUT/unseen.json" \
    --splits "$OUT/splits$n.json"
  TRAIN=(--epochs "$EPOCHS" --patch 64 --batch-size 8 --seed 0)
  todo "$OUT/run_ft$n/last.ckpt" && $M train "$OUT/ds$n" "$OUT/run_ft$n" --init "$LHDL/best.ckpt" \
    --learning-rate "$FT_LR" "${TRAIN[@]}"
  todo "$OUT/run_scratch$n/last.ckpt" && $M train "$OUT/ds$n" "$OUT/run_scratch$n" --learning-rate "$LR" \
    "${TRAIN[@]}"
done

step "predict and evaluate the held-out slabs"
for name in none ft1 scratch1 ft2 scratch2; do
  ckpt="$OUT/run_$name/$CKPT.ckpt"; [ "$name" = none ] && ckpt="$LHDL/best.ckpt"
  for s in $TEST; do
    todo "$OUT/${s}_sr_$name.mha" && $M predict "$ckpt" "$OUT/${s}_lr.mha" "$OUT/${s}_sr_$name.mha"
    todo "$OUT/eval_${name}_$s/summary.json" && $M evaluate "$OUT/eval_${name}_$s" \
      --hr "$LHDL/data/${s}_hr.mha" --lr "$OUT/${s}_lr.mha" --sr "$OUT/${s}_sr_$name.mha" --no-3d
  done
done

step "table"
$PY "$(dirname "$0")/acquisition_tables.py" finetune "$OUT" | tee "$OUT/table.md"
