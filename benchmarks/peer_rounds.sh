#!/usr/bin/env bash
# Our models and the PyTorch peer (../shared/bench/peer_bench_torch.py), alternating, in rounds:
# ratios from one session are what count, since these machines drift by 10-20 % between runs.
#
#     bash benchmarks/peer_rounds.sh [rounds] [torch python]
#
# Prints one JSON line per measurement, tagged {"round": r, "run": name, "result": {...}}.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
torch=${2:-/tmp/torch-venv/bin/python}
peer=../shared/bench/peer_bench_torch.py
folder=(--config.dataset.name=image_folder --config.dataset.path=/tmp)  # no data read: synthetic
celeba=(--config=experiments/celeba.py "${folder[@]}" --config.dataset.channels=3)
mlp=(--config=experiments/mnist.py "${folder[@]}" --config.dataset.channels=1
  --config.dataset.image_size=28 --batch_size=128)
peer_shaped=(--config.model.channels="(32,64,128,256,512)" --config.model.hidden="()")

report() {  # round, name, command...
  local round=$1 name=$2
  shift 2
  echo "{\"round\": $round, \"run\": \"$name\", \"result\": $("$@" 2>/dev/null | tail -1)}"
}

for round in $(seq "$rounds"); do
  report "$round" torch_conv "$torch" "$peer" --model conv --batch 64 --steps 20
  report "$round" celeba .venv/bin/python benchmarks/train_throughput.py "${celeba[@]}"
  report "$round" celeba_peer_shaped .venv/bin/python benchmarks/train_throughput.py \
    "${celeba[@]}" "${peer_shaped[@]}"
  report "$round" torch_mlp "$torch" "$peer" --model mlp --batch 128 --steps 100
  report "$round" mnist_mlp .venv/bin/python benchmarks/train_throughput.py "${mlp[@]}"
done
