#!/usr/bin/env bash
# One GPU session (issue #3), run from the repository root on a machine with one CUDA GPU:
#   1. a short training run that checks the GPU path end to end and times one LoD epoch;
#   2. the GPU step check: LoD step vs dense step, ResNet-18, batch 256, bf16 (bench_train_step.py);
#   3. the embedded default model's training run, with as many epochs as fit the time left.
# Needs: torch with CUDA, click, numpy; Fashion-MNIST's four .gz files in $MAESTRO_EDGE_FASHION_MNIST_DIR
# (default .gpu/fmnist: copy /usr/share/datasets/fashion-mnist/*.gz there; .gpu/ is git-ignored, carry it).
# Results go to $OUT (logs, the step-check rows, the checkpoint split into 15 MB parts).
# Usage: OUT=/tmp/out BUDGET_S=560 bash bench/gpu_session.sh
set -u -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export MAESTRO_EDGE_FASHION_MNIST_DIR="${MAESTRO_EDGE_FASHION_MNIST_DIR:-$PWD/.gpu/fmnist}"
OUT="${OUT:-/tmp/gpu_out}"
BUDGET_S="${BUDGET_S:-560}"          # wall seconds for the whole script
SIZE="${SIZE:-96}"                   # the default model's input size
# Dry run on a CPU: DEVICE=cpu PRECISION=fp32 SIZE=16 SMOKE_LIMIT=256 FULL_LIMIT=512 SKIP_STEP=1
DEVICE="${DEVICE:-cuda}" PRECISION="${PRECISION:-bf16}" SMOKE_LIMIT="${SMOKE_LIMIT:-2048}"
FULL=(${FULL_LIMIT:+--limit "$FULL_LIMIT"})
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1     # one log; what comes back from a device is limited to 8 files
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" \
    || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# --clip-grad-norm 5: without it, LoD diverged at the LR peak in a 7-epoch run (BENCHMARKS.md, "Why LoD diverged").
TRAIN=(python3 -m maestro_edge train --arch resnet18 --input-size "$SIZE" --data fashion-mnist --batch-size 256
       --lr 0.1 --constant-shapes --clip-grad-norm 5 --device "$DEVICE" --precision "$PRECISION")

# 1. Smoke run and epoch timing: 2048 images per split, one warm-up epoch and one LoD epoch.
S0=$(elapsed)
"${TRAIN[@]}" --limit "$SMOKE_LIMIT" --epochs 2 --warmup-epochs 1 --out /tmp/smoke.pt || exit 1
SMOKE_S=$(( $(elapsed) - S0 ))

# 2. The GPU step check (paper's CIFAR input), then the default model's input; rows go to bench/results/training.md.
#    The sliced variant (lod) is left out: cuDNN autotunes every new shape, which could outlast the timeout.
STEP=(python3 bench/bench_train_step.py --device "$DEVICE" --dtype "$PRECISION" --arch resnet18 --batch 256)
if [ -z "${SKIP_STEP:-}" ]; then
  timeout 150 "${STEP[@]}" --input 3x32x32 --variants dense,lod-mask,lod-mask-factors,lod-mask-loop 
  timeout 100 "${STEP[@]}" --input 1x96x96 --rounds 20 --variants dense,lod-mask 
  cp bench/results/training.md "$OUT/"
fi

# 3. The default model: epochs from the smoke run's LoD-epoch time, scaled to the full data.
LEFT=$(( BUDGET_S - $(elapsed) ))
EPOCHS=$(python3 - "$LEFT" "$SMOKE_S" "$SMOKE_LIMIT" <<'EOF'
import sys
from maestro_edge.lod.checkpoint import LoDCheckpoint
left, smoke_s, smoke_n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
history = LoDCheckpoint.load("/tmp/smoke.pt").progress["history"]
lod_epoch = history[1]["elapsed_s"] - history[0]["elapsed_s"]       # smoke_n images (train, BN and val each)
epoch = lod_epoch * 55000 / smoke_n * 1.15                             # full split; 15% margin
fixed = (smoke_s - history[1]["elapsed_s"]) * 5000 / smoke_n + 40     # importance on 5000 val, test, start-up
print(max(2, min(15, int((left - fixed) // epoch))))
print(f"LoD epoch ~{epoch:.0f} s (estimated), importance+test ~{fixed:.0f} s, {left:.0f} s left", file=sys.stderr)
EOF
) || exit 1
echo "epochs: $EPOCHS (at $(elapsed) s)"
echo "command: maestro-edge train --arch resnet18 --input-size $SIZE --data fashion-mnist --batch-size 256 --lr 0.1" \
     "--constant-shapes --clip-grad-norm 5 --device $DEVICE --precision $PRECISION --epochs $EPOCHS --warmup-epochs 1 --out default.lod.pt"
LIMIT_S=$(( BUDGET_S + 20 - $(elapsed) )); [ "$LIMIT_S" -lt 60 ] && LIMIT_S=60
# Saved after every epoch: if the time runs out, the parts below hold a resumable checkpoint.
timeout "$LIMIT_S" "${TRAIN[@]}" "${FULL[@]}" --epochs "$EPOCHS" --warmup-epochs 1 \
    --out /tmp/default.lod.pt
echo "trained at $(elapsed) s"
# Factors cut to the active ranks, optimizer state dropped (fp32; fp16 storage is decided later).
python3 -m maestro_edge.lod.compact /tmp/default.lod.pt /tmp/compact.lod.pt || cp /tmp/default.lod.pt /tmp/compact.lod.pt
split -b 15000000 -d /tmp/compact.lod.pt "$OUT/default.lod.pt.part"
echo "done at $(elapsed) s"
