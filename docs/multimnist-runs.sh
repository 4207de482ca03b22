#!/usr/bin/env bash
# The three MultiMNIST runs, epoch by epoch in turn (CapsNet, CapsNet with 1 routing iteration, CNN),
# so that whenever the clock stops them the two CapsNets have seen the same pairs. Rerunning resumes:
# a run's completed epochs are read from its log, and each epoch's checkpoint is kept as epoch-N.
# Usage: nice -n 10 bash docs/multimnist-runs.sh DATA_ROOT RUNS_DIR [train options, e.g. --limit 256 for a dry run]
set -euo pipefail
data_root=${1:?data root holding MNIST}
runs=${2:?folder for the three run folders}
shift 2
epochs=2  # the declared schedule: 2 epochs of 60,000 pairs, Adam lr 1e-3 x0.9 per epoch, batch 128, seed 0
py=${PYTHON:-python}

declare -A model_args=(
  [capsnet]="--model capsnet --routing-iters 3"
  [capsnet-r1]="--model capsnet --routing-iters 1"
  [cnn]="--model cnn --preset small"
)

done_epochs() {  # completed epochs of a run folder, 0 when it has none
  "$py" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$1/log.json" 2>/dev/null || echo 0
}

for epoch in $(seq 1 "$epochs"); do
  for run in capsnet capsnet-r1 cnn; do
    out="$runs/$run"
    have=$(done_epochs "$out")
    if (( have >= epoch )); then continue; fi
    if (( have == 0 )); then
      start=(${model_args[$run]} --seed 0 --batch-size 128 --lr 1e-3)
    else
      start=(--resume "$out/last.safetensors")
    fi
    "$py" -m capsviz train --data multimnist --data-root "$data_root" --out "$out" \
      --epochs "$epoch" --lr-decay 0.9 --threads 2 "${start[@]}" "$@"
    cp "$out/last.safetensors" "$out/epoch-$epoch.safetensors.tmp"
    mv "$out/epoch-$epoch.safetensors.tmp" "$out/epoch-$epoch.safetensors"
  done
done
