#!/usr/bin/env bash
# One GPU lease in one command (docs/gpu.md): the CUDA tests, the GPU bench, the MNIST public recipe
# from scratch, then the MultiMNIST CapsNet, each stopped by its own clock; everything that comes back
# is packed into at most 8 files under $OUT. A CPU dry run: LEASE_DEVICE=cpu LEASE_LIMIT=256 LEASE_EPOCHS=1.
set -uo pipefail
export PYTHONUNBUFFERED=1
: "${OUT:?OUT must name the folder that comes back}"
DATA=${LEASE_DATA:-.gpu-data}
DEVICE=${LEASE_DEVICE:-cuda}
EPOCHS=${LEASE_EPOCHS:-50}
LIMIT=${LEASE_LIMIT:+--limit $LEASE_LIMIT}
TESTS_S=${LEASE_TESTS_S:-60} BENCH_S=${LEASE_BENCH_S:-60} MNIST_S=${LEASE_MNIST_S:-210} MULTI_S=${LEASE_MULTI_S:-150}
WORK=${LEASE_WORK:-/tmp/capsviz-lease}
BACK=$WORK/back
rm -rf "$WORK" && mkdir -p "$BACK"
say() { echo "[$(date -u +%FT%TZ)] $*" | tee -a "$BACK/lease.log"; }
# The declared schedule of both runs: Adam 1e-3 x 0.9 per epoch, batch 128, seed 0, up to $EPOCHS
# epochs; the clock is the only other stop and the last completed epoch is exported. The test set
# selects nothing.
SCHEDULE=(--batch-size 128 --epochs "$EPOCHS" --lr 1e-3 --lr-schedule exp --lr-decay 0.9 --seed 0)

say "device: $(python3 -c 'import torch; d=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"; print(torch.__version__, d)')"

say "1. CUDA tests (${TESTS_S} s)"
CAPSVIZ_TEST_DEVICE=$DEVICE timeout "$TESTS_S" python3 -m pytest -q -p no:cacheprovider \
  --junitxml="$BACK/tests-cuda.xml" tests/test_model.py tests/test_routing.py tests/test_fastpath.py \
  tests/test_checkpoint.py 2>&1 | tail -n 30 | tee -a "$BACK/lease.log"

say "2. GPU bench (${BENCH_S} s)"
timeout "$BENCH_S" python3 -m capsviz.bench --device "$DEVICE" --sections training,kernels --plain --compile \
  --steps 20 --rounds 3 --warmup 5 --data-root "$DATA" --json "$BACK/bench-gpu.json" 2>&1 | tail -n 40 | tee -a "$BACK/lease.log"

train_and_export() {  # name seconds note [train options...]
  local name=$1 seconds=$2 note=$3; shift 3
  say "train $name (${seconds} s): $*"
  timeout -s INT "$seconds" python3 -m capsviz train --device "$DEVICE" "${SCHEDULE[@]}" --data-root "$DATA" \
    --out "$WORK/$name" $LIMIT "$@" 2>"$WORK/$name.progress" | tee -a "$BACK/lease.log"
  if [ -f "$WORK/$name/last.safetensors" ]; then
    cp "$WORK/$name/log.json" "$BACK/$name.log.json"
    python3 -m capsviz export "$WORK/$name/last.safetensors" --half --data-root "$DATA" \
      --out "$BACK/$name.safetensors" --note "$note" 2>&1 | tail -n 5 | tee -a "$BACK/lease.log"
  else
    say "$name: no epoch completed"; tail -n 20 "$WORK/$name.progress" | tee -a "$BACK/lease.log"
  fi
}
HOW="from scratch on one GPU ($(python3 -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU")'), docs/gpu-lease.sh): Adam 1e-3 x0.9 per epoch, batch 128, seed 0, fast path; declared up to $EPOCHS epochs"
train_and_export capsnet_mnist "$MNIST_S" "$HOW, stopped by the clock at $MNIST_S s"
train_and_export capsnet_multimnist "$MULTI_S" "$HOW, stopped by the clock at $MULTI_S s" --data multimnist

say "packing"
cp "$BACK/lease.log" "$OUT/lease.log"
tar -C "$BACK" -cf - . | split -b 16000000 -d - "$OUT/lease.tar."
ls -l "$OUT" | tee -a "$OUT/lease.log"
