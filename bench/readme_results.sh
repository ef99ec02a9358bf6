#!/usr/bin/env bash
# Re-measure the README's results, one run after another (2-core CPU: about an hour).
# Run on an idle machine: two PyTorch jobs at once are each several times slower.
#
#   bench/readme_results.sh OUT_DIR            (DATA=path/to/lhdl_3155_D_4_bc to override)
#
# 1. make demo's phantom demo; 2. the LHDL demo; 3. acquisitions the model never saw
# (issue 12): models of the default protocol (with and without noise-level augmentation),
# randomised-acquisition models (one draw per slab; 8 draws per training slab; plus noise
# augmentation) and a model of each test protocol itself, scored on LHDL test slabs simulated
# with a filter (hann) and a noise level (800, 200, and 1e7 photons x 1 frame) outside the
# randomised training ranges; 4. the frames experiment (study-demo
# --frames, phantoms); 5. the LHDL study (morphometry, threshold sweep, intensity bias);
# 6. compare: the default model against the same with the structure-aware loss; 7. the
# in-plane-only path (SR on the LR slice grid, linear along z) beside the HR-grid output.
set -euo pipefail
OUT=${1:?usage: bench/readme_results.sh OUT_DIR}
DATA=${DATA:-$(dirname "$0")/../../shared/data/lhdl_3155_D_4_bc}
M=${MICROSR:-.venv/bin/microsr}  # e.g. MICROSR="python -m microsr" with PYTHONPATH=snapshot/src
mkdir -p "$OUT"
# shellcheck source=bench/_steps.sh
source "$(dirname "$0")/_steps.sh"  # step, todo (a step whose output exists is skipped)

step "1. phantom demo"
todo "$OUT/demo/summary.json" && $M demo "$OUT/demo"
step "2. LHDL demo"
todo "$OUT/lhdl/summary.json" && $M demo "$OUT/lhdl" --data "$DATA" --spacing 0.0195 --minutes 4

step "3. unseen acquisition protocol"
P="$OUT/protocol"
mkdir -p "$P"
# Training ranges: the defaults without the hann filter and with at least 2500 photons.
cat > "$P/train_ranges.json" <<'EOF'
{"photons": [2500, 20000], "filters": ["ramp", "shepp-logan", "cosine", "hamming"]}
EOF
# The test protocol, fixed (min = max): hann filter, 800 photons, 1 frame.
cat > "$P/test_protocol.json" <<'EOF'
{"photons": [800, 800], "frames": [1, 1], "projections_ratio": [0.5, 0.5],
 "filters": ["hann"], "psf_sigma_bins": [0, 0], "shift_hr_voxels": [0, 0],
 "ring_strength": [0, 0]}
EOF
{
  echo "specimen,site,lr_path,hr_path"
  for hr in "$OUT"/lhdl/data/slab*_hr.mha; do
    s=$(basename "$hr" _hr.mha); echo "$s,lhdl,,$(realpath "$hr")"
  done
} > "$P/manifest.csv"
todo "$P/ds_fixed" && $M prepare "$P/manifest.csv" "$P/ds_fixed"  # the default protocol, as the demo
todo "$P/ds_random" && $M prepare "$P/manifest.csv" "$P/ds_random" --randomize --ranges "$P/train_ranges.json"
todo "$P/ds_random8" && $M prepare "$P/manifest.csv" "$P/ds_random8" --randomize --ranges "$P/train_ranges.json" \
  --draws 8
todo "$P/ds_test_protocol" && $M prepare "$P/manifest.csv" "$P/ds_test_protocol" --randomize --ranges "$P/test_protocol.json" \
  --simulate-seed 1
# A second, noisier unseen protocol (a fast low-dose scan): Hann, 200 photons x 1 frame.
sed 's/800, 800/200, 200/' "$P/test_protocol.json" > "$P/test_protocol200.json"
todo "$P/ds_test_protocol200" && $M prepare "$P/manifest.csv" "$P/ds_test_protocol200" --randomize \
  --ranges "$P/test_protocol200.json" --simulate-seed 1
# A third unseen protocol, beyond the other end of the noise range (a long, many-frame scan):
# Hann, 1e7 photons (no noise to speak of).
sed 's/800, 800/1e7, 1e7/' "$P/test_protocol.json" > "$P/test_protocol_clean.json"
todo "$P/ds_test_protocol_clean" && $M prepare "$P/manifest.csv" "$P/ds_test_protocol_clean" --randomize \
  --ranges "$P/test_protocol_clean.json" --simulate-seed 1
# the LR noise of the protocols (scale of --noise-augment)
todo "$P/noise_levels.md" && ${PYTHON:-.venv/bin/python} bench/noise_levels.py "$OUT/lhdl/data/slab01_hr.mha" "$P/ds_random" \
  --photons 200,800,2500,5000,20000 \
  > "$P/noise_levels.md"
# Every model: the same 4 minutes, L1 + SSIM (structure term off: the acquisitions alone differ).
TRAIN=(--max-minutes 4 --epochs 10000 --patch 64 --batch-size 8 --seed 0 --structure-weight 0)
NOISE=${NOISE:-0.06}
for run in fixed random random8 test_protocol; do
  todo "$P/run_$run/best.ckpt" && $M train "$P/ds_$run" "$P/run_$run" "${TRAIN[@]}"
done
todo "$P/run_random8_noise/best.ckpt" && $M train "$P/ds_random8" "$P/run_random8_noise" "${TRAIN[@]}" \
  --noise-augment "$NOISE"
todo "$P/run_fixed_noise/best.ckpt" && $M train "$P/ds_fixed" "$P/run_fixed_noise" "${TRAIN[@]}" \
  --noise-augment "$NOISE"
todo "$P/run_test_protocol200/best.ckpt" && $M train "$P/ds_test_protocol200" "$P/run_test_protocol200" \
  "${TRAIN[@]}"
todo "$P/run_test_protocol_clean/best.ckpt" && $M train "$P/ds_test_protocol_clean" \
  "$P/run_test_protocol_clean" "${TRAIN[@]}"
# score_models SLAB HR LR TAG PREFIX MODEL...: each MODEL's SR of LR ($P/SLAB_srTAG_MODEL.mha),
# scored against HR into $P/PREFIX_MODEL_SLAB
score_models() {
  local s=$1 hr=$2 lr=$3 tag=$4 prefix=$5 name; shift 5
  for name in "$@"; do
    todo "$P/${s}_sr${tag}_${name}.mha" && $M predict "$P/run_$name/best.ckpt" "$lr" "$P/${s}_sr${tag}_${name}.mha"
    todo "$P/${prefix}_${name}_${s}/summary.json" && $M evaluate "$P/${prefix}_${name}_${s}" --hr "$hr" \
      --lr "$lr" --sr "$P/${s}_sr${tag}_${name}.mha" --no-3d
  done
  return 0  # a skipped last step is not a failure
}
MODELS=(fixed fixed_noise random random8 random8_noise)
for s in $(python3 -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['test']))" \
    "$P/ds_random/splits.json"); do
  hr="$OUT/lhdl/data/${s}_hr.mha"
  # the unseen protocols: Hann at 800, 200 and 1e7 photons x 1 frame
  todo "$P/${s}_lr_unseen.mha" && $M simulate "$hr" "$P/${s}_lr_unseen.mha" --filter hann --photons 800 --frames 1 --seed 7
  score_models "$s" "$hr" "$P/${s}_lr_unseen.mha" "" eval "${MODELS[@]}" test_protocol
  todo "$P/${s}_lr_unseen200.mha" && $M simulate "$hr" "$P/${s}_lr_unseen200.mha" --filter hann --photons 200 \
    --frames 1 --seed 7
  score_models "$s" "$hr" "$P/${s}_lr_unseen200.mha" 200 eval200 "${MODELS[@]}" test_protocol200
  todo "$P/${s}_lr_unseen_clean.mha" && $M simulate "$hr" "$P/${s}_lr_unseen_clean.mha" --filter hann \
    --photons 1e7 --frames 1 --seed 7
  score_models "$s" "$hr" "$P/${s}_lr_unseen_clean.mha" clean evalclean "${MODELS[@]}" test_protocol_clean
  # the default protocol (the LHDL demo's LR scans): does randomised training lose there?
  score_models "$s" "$hr" "$OUT/lhdl/data/${s}_lr.mha" seen seen "${MODELS[@]}"
done

step "4. frames experiment (phantoms)"
todo "$OUT/frames/study/report" && $M study-demo "$OUT/frames" --frames --minutes 1
step "5. LHDL study"
todo "$OUT/lhdl_study/study/report" && $M study-demo "$OUT/lhdl_study" --data "$DATA" --spacing 0.0195 --minutes 4
step "6. compare: structure-aware loss"
todo "$OUT/compare/table.md" && $M compare "$OUT/compare" --data "$DATA" --spacing 0.0195 --minutes 2 \
  --candidates resunet25d_l1ssim,resunet25d_l1ssim_structure
step "7. the in-plane-only path: SR on the LR slice grid, interpolated along z"
for demo in demo lhdl; do
  D="$OUT/$demo"
  for s in $(python3 -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['test']))" \
      "$D/dataset/splits.json"); do
    todo "$D/lrgrid/${s}_sr.mha" && $M predict "$D/best.ckpt" "$D/data/${s}_lr.mha" \
      "$D/lrgrid/${s}_sr.mha" --z-grid lr
    todo "$D/lrgrid/eval_${s}/summary.json" && $M evaluate "$D/lrgrid/eval_${s}" \
      --hr "$D/data/${s}_hr.mha" --lr "$D/data/${s}_lr.mha" --sr "$D/lrgrid/${s}_sr.mha" --no-3d
  done
done
step "done"
