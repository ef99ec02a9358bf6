#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md on one device, its output kept in one file.
#
#   bash bench/run_all.sh cuda          # a GPU machine: the rows BENCHMARKS.md still lacks
#   bash bench/run_all.sh cpu 48        # this CPU, 48 prediction slices (quick check)
#
# Writes bench/results-<device>-<date>.txt (the machine line of each script included).
# Run it on an otherwise idle machine; copy the numbers into BENCHMARKS.md with the command.
set -euo pipefail
device=${1:-cuda}
slices=${2:-1000}
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then py=.venv/bin/python; fi
out="bench/results-${device}-$(date +%Y%m%dT%H%M%S).txt"
workers=$(( $(nproc) > 8 ? 8 : $(nproc) - 1 ))
if [ "$device" = cuda ]; then precision=bf16-mixed; batch=16; train_slices=64; else
  precision=32; batch=8; train_slices=8; fi
run() { echo "\$ $*" | tee -a "$out"; "$@" 2>&1 | grep -v -e Warning -e warn -e Tip | tee -a "$out"; }
run "$py" bench/bench_layout.py --device "$device"
run "$py" bench/bench_floor.py --device "$device"
run "$py" bench/bench_predict.py --device "$device" --slices "$slices" --repeat 3 \
  --methods naive,microsr_fp32,microsr
run "$py" bench/bench_train.py --device "$device" --precision "$precision" \
  --slices "$train_slices" --specimens 8 --epochs 3 --workers "$workers" --batch "$batch"
if [ "$device" = cpu ]; then run "$py" bench/bench_concurrent.py --device cpu; fi
# the issue-35 size on a GPU (512^3 LR -> 1024^3 SR, ~2x the output on disk), 128^3 on a CPU
if [ "$device" = cuda ]; then zside=512; else zside=128; fi
run "$py" bench/bench_zarr.py --device "$device" --side "$zside" --z "$zside" --workers 1,2
run "$py" bench/bench_memory.py --device "$device"
echo "results: $out"
