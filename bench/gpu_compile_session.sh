#!/usr/bin/env bash
# One GPU session for the compiled LoD step (issue #3's step check, Recipe.compile), from the repository root:
#   1. the step check at the paper's input (ResNet-18, batch 256, bf16), eager and compiled, dense and LoD;
#   2. the real training loop with --compile vs without, on 4096 Fashion-MNIST images (warm-up, re-split,
#      shrinking, BN recalibration, evaluation all run through the compiled step);
#   3. the step check at the default model's input (1x96x96), if time is left.
# Needs torch with CUDA (and triton), click, numpy; data as for bench/gpu_session.sh (.gpu/fmnist).
# Usage: OUT=/tmp/out BUDGET_S=540 bash bench/gpu_compile_session.sh
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MAESTRO_EDGE_FASHION_MNIST_DIR="${MAESTRO_EDGE_FASHION_MNIST_DIR:-$PWD/.gpu/fmnist}"
OUT="${OUT:-/tmp/gpu_out}"
BUDGET_S="${BUDGET_S:-540}"
DEVICE="${DEVICE:-cuda}" PRECISION="${PRECISION:-bf16}"
T0=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" \
    || exit 1

STEP=(python3 bench/bench_train_step.py --device "$DEVICE" --dtype "$PRECISION" --arch resnet18 --batch 256
      --variants dense,dense-compile,lod-mask,lod-mask-compile)
# 1. The step check. Compilation (two graphs each, forward and backward) happens in the warm-up rounds.
timeout $(( $(left) < 300 ? $(left) : 300 )) "${STEP[@]}" --input 3x32x32 --warmup 5 --rounds 30
echo "step check done, $(left) s left"

# 2. The training loop, compiled and not: same seed and data; epoch times and accuracies from the history.
TRAIN=(python3 -m maestro_edge train --arch resnet18 --data fashion-mnist --limit 4096 --batch-size 256 --lr 0.1
       --constant-shapes --clip-grad-norm 5 --device "$DEVICE" --precision "$PRECISION" --epochs 3 --warmup-epochs 1 -q)
for variant in eager compile; do
  flag=(); [ "$variant" = compile ] && flag=(--compile)
  [ "$(left)" -lt 60 ] && break
  timeout $(( $(left) < 150 ? $(left) : 150 )) "${TRAIN[@]}" "${flag[@]}" --out "/tmp/loop-$variant.pt" \
    && python3 - "$variant" <<'EOF'
import sys
from maestro_edge.lod.checkpoint import LoDCheckpoint
ckpt = LoDCheckpoint.load(f"/tmp/loop-{sys.argv[1]}.pt")
for h in ckpt.progress.get("history", []):
    print(sys.argv[1], {k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()
                        if k in ("epoch", "train_loss", "val_accuracy", "elapsed_s")})
print(sys.argv[1], "metrics", ckpt.metrics)
EOF
done
echo "loop done, $(left) s left"

# 3. The default model's input size.
[ "$(left)" -gt 150 ] && timeout $(( $(left) - 10 )) "${STEP[@]}" --input 1x96x96 --warmup 5 --rounds 15
cp bench/results/training.md "$OUT/"
echo "done, $(left) s left"
