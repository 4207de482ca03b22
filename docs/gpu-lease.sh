#!/usr/bin/env bash
# The GPU path in one command (docs/gpu.md), for a machine with one CUDA GPU: the GPU bench alone, then
# five training runs at once on the one GPU (the three MultiMNIST runs and the MNIST CapsNet with 3 and
# with 1 routing iteration) beside the CUDA tests (the test files that use the test_device fixture), all
# stopped by one clock; then exports and routing reports, packed under $OUT as lease.log and lease.tar.NN
# (16,000,000-byte parts). Each step has its own clock: LEASE_BENCH_S, LEASE_TESTS_S, LEASE_TRAIN_S.
# A CPU dry run: LEASE_DEVICE=cpu LEASE_LIMIT=256 LEASE_TRAIN_S=100 LEASE_BENCH_S=10 LEASE_TESTS_S=20.
set -uo pipefail
export PYTHONUNBUFFERED=1
: "${OUT:?OUT must name the folder that comes back}"
DATA=${LEASE_DATA:-.gpu-data}
DEVICE=${LEASE_DEVICE:-cuda}
LIMIT=${LEASE_LIMIT:+--limit $LEASE_LIMIT}
BENCH_S=${LEASE_BENCH_S:-240} TESTS_S=${LEASE_TESTS_S:-120} TRAIN_S=${LEASE_TRAIN_S:-300}
WORK=${LEASE_WORK:-/tmp/capsviz-lease}
BACK=$WORK/back
rm -rf "$WORK" && mkdir -p "$BACK"
say() { echo "[$(date -u +%FT%TZ)] $*" | tee -a "$BACK/lease.log"; }
# The declared schedule of all five runs (docs/multimnist.md): Adam 1e-3 x 0.9 per epoch, batch 128,
# seed 0, up to 50 epochs; the clock is the only other stop. The test set selects nothing.
SCHEDULE=(--batch-size 128 --epochs 50 --lr 1e-3 --lr-schedule exp --lr-decay 0.9 --seed 0 --keep-epochs)
GPU=$(python3 -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU")')
say "device: $GPU, torch $(python3 -c 'import torch; print(torch.__version__)')"

# unpacked once here, not by five runs at once
python3 -c 'import sys; from capsviz.data import load_mnist; [load_mnist(sys.argv[1], train=t) for t in (True, False)]' "$DATA"
say "1. GPU bench alone (${BENCH_S} s)"
timeout "$BENCH_S" python3 -m capsviz.bench --device "$DEVICE" --sections training --plain --epoch \
  --steps 20 --rounds 3 --warmup 5 --data-root "$DATA" --json "$BACK/bench-gpu.json" 2>&1 | tail -n 30 | tee -a "$BACK/lease.log"

declare -A RUNS=(
  [multimnist-capsnet]="--data multimnist --model capsnet --routing-iters 3"
  [multimnist-capsnet-r1]="--data multimnist --model capsnet --routing-iters 1"
  [multimnist-cnn]="--data multimnist --model cnn --preset small"
  [mnist-capsnet]="--data mnist --model capsnet --routing-iters 3"
  [mnist-capsnet-r1]="--data mnist --model capsnet --routing-iters 1"
)
say "2. five runs at once, one clock (${TRAIN_S} s), beside the CUDA tests (${TESTS_S} s)"
for run in "${!RUNS[@]}"; do
  # shellcheck disable=SC2086  # the run's options are words
  OMP_NUM_THREADS=3 timeout -s INT "$TRAIN_S" python3 -m capsviz train --device "$DEVICE" "${SCHEDULE[@]}" \
    --data-root "$DATA" --out "$WORK/$run" $LIMIT ${RUNS[$run]} >"$WORK/$run.out" 2>"$WORK/$run.progress" &
done
CAPSVIZ_TEST_DEVICE=$DEVICE timeout "$TESTS_S" python3 -m pytest -v -p no:cacheprovider \
  --junitxml="$BACK/tests-cuda.xml" tests/test_model.py tests/test_routing.py tests/test_fastpath.py \
  tests/test_checkpoint.py tests/test_train.py >"$BACK/tests-cuda.log" 2>&1  # -v: a cut run still names each result
tail -n 5 "$BACK/tests-cuda.log" | tee -a "$BACK/lease.log"
wait
for run in "${!RUNS[@]}"; do
  say "$run:"; cat "$WORK/$run.out" | tee -a "$BACK/lease.log"; tail -c 600 "$WORK/$run.progress" >>"$BACK/lease.log"
  [ -f "$WORK/$run/log.json" ] && cp "$WORK/$run/log.json" "$BACK/$run.log.json"
done

epochs() { python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$WORK/$1/log.json" 2>/dev/null || echo 0; }
shipped() {  # run epoch out note: export epoch-N in float16, then its routing report on the GPU
  local run=$1 epoch=$2 out=$3 note=$4
  [ "$epoch" -ge 1 ] || { say "$run: no epoch to export"; return; }
  OMP_NUM_THREADS=5 python3 -m capsviz export "$WORK/$run/epoch-$epoch.safetensors" --half --data-root "$DATA" \
    --out "$BACK/$out.safetensors" --note "$note" 2>&1 | tail -n 3 | tee -a "$BACK/lease.log"
}
routing() {  # checkpoint report
  [ -f "$1" ] || return
  python3 -m capsviz routing-accuracy --checkpoint "$1" --device "$DEVICE" --data-root "$DATA" --out "$2" $LIMIT \
    2>&1 | tail -n 3 | tee -a "$BACK/lease.log"
}
m=$(( $(epochs multimnist-capsnet) < $(epochs multimnist-capsnet-r1) ? $(epochs multimnist-capsnet) : $(epochs multimnist-capsnet-r1) ))
c=$(( $(epochs multimnist-cnn) < m ? $(epochs multimnist-cnn) : m ))
s=$(( $(epochs mnist-capsnet) < $(epochs mnist-capsnet-r1) ? $(epochs mnist-capsnet) : $(epochs mnist-capsnet-r1) ))
say "3. exports: MultiMNIST CapsNets at epoch $m (the last both completed), CNN at $c; MNIST pair measured at $s"
HOW="on one $GPU shared by five runs at once, $(date -u +%F), docs/gpu-lease.sh: Adam 1e-3 x0.9 per epoch, batch 128, seed 0; declared up to 50 epochs, stopped by a ${TRAIN_S} s clock"
shipped multimnist-capsnet "$m" capsnet_multimnist "$HOW; epoch $m, the last both MultiMNIST CapsNets completed" &
shipped multimnist-capsnet-r1 "$m" capsnet_r1_multimnist "$HOW; epoch $m, the last both MultiMNIST CapsNets completed" &
shipped multimnist-cnn "$c" cnn_multimnist "$HOW; epoch $c, as many pairs as the CapsNets saw" &
wait
say "4. routing reports (1..5 iterations)"
routing "$BACK/capsnet_multimnist.safetensors" "$BACK/capsnet_multimnist.routing.json"
routing "$BACK/capsnet_r1_multimnist.safetensors" "$BACK/capsnet_r1_multimnist.routing.json"
if [ "$s" -ge 1 ]; then
  routing "$WORK/mnist-capsnet/epoch-$s.safetensors" "$BACK/mnist-capsnet.routing.json"
  routing "$WORK/mnist-capsnet-r1/epoch-$s.safetensors" "$BACK/mnist-capsnet-r1.routing.json"
fi

say "packing"
cp "$BACK/lease.log" "$OUT/lease.log"
tar -C "$BACK" -cf - . | split -b 16000000 -d - "$OUT/lease.tar."
ls -l "$OUT" | tee -a "$OUT/lease.log"
