#!/usr/bin/env bash
# GPU smoke test + benchmark for a CUDA machine (never run by `make test` or `make bench`).
#   1. train.py with the recipe config (UNet EfficientNet-b7, random init) in fp16 AMP with
#      GradScaler and channels_last, 2 epochs on the demo's synthetic data: images/s;
#   2. torchrun, 1 process, NCCL: the DDP path end to end (tiny config, 1 epoch);
#   3. inference: the recipe's naive loop vs the engine on CUDA (bench/infer.py);
#   4. the recipe search (experiments/recipe_search.py) on the GPU: cpu_fast variants and pseudo-label
#      rounds scored on the hidden test frames (accuracy figures; the GPU just makes them quick);
#   5. torch.compile: cpu_fast in fp16 + channels_last, 3 epochs eager then compiled, images/s.
# Each stage's output goes to $OUT/smoke.log (or a temp dir); a failed stage does not stop the rest.
#
#   bash bench/gpu_smoke.sh            # PY=python3 bash bench/gpu_smoke.sh to use another interpreter
#   DEADLINE_S=0 bash bench/gpu_smoke.sh # skip stage 4
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RESULTS=${OUT:-$(mktemp -d -t gpu_smoke_out.XXXXXX)}
WORK=$(mktemp -d -t gpu_smoke.XXXXXX)
# Stage 4 runs until DEADLINE_S seconds after the start (then what finished is kept).
DEADLINE_S=${DEADLINE_S:-420}
export PYTHONUNBUFFERED=1
LOG="$RESULTS/smoke.log"
trap 'rm -rf "$WORK"' EXIT

stage() {  # stage NAME SECONDS command...: run with a time limit, log it, report exit status + time
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "== $name ($(date +%T))" | tee -a "$LOG"
    timeout "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    echo "== $name: exit $rc in $((SECONDS - start)) s" | tee -a "$LOG"
}
history() {  # history RUN_DIR: epoch, images/s and val mIoU per epoch
    cut -d, -f1,5,6 "$1/history.csv" 2>/dev/null | tr '\n' ' ' | tee -a "$LOG"
    echo | tee -a "$LOG"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
"$PY" -c "import torch; assert torch.cuda.is_available(); print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$LOG"
DATA="$WORK/search/data"
stage data 120 "$PY" -m experiments.recipe_search --out "$WORK/search" --variants base --folds 0 \
    --data-workers 8 --prepare-only

stage "recipe b7 fp16" 120 "$PY" train.py --config configs/seed-efficientnet-b7.json --data-dir "$DATA" --fold 0 \
    --epochs 2 --gpu 0 --workers 6 --output-dir "$WORK/runs" --name b7 \
    --set fp16=true --set channels_last=true --set validation.interval=2
history "$WORK/runs/b7/fold_0"

stage "torchrun nccl" 60 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 train.py \
    --config configs/tiny.yaml --data-dir "$DATA" --fold 0 --epochs 1 --gpu 0 --workers 2 \
    --output-dir "$WORK/runs" --name ddp
history "$WORK/runs/ddp/fold_0"

stage "inference naive vs engine" 100 "$PY" -m bench.infer --device cuda --frames 80 --work-dir "$WORK/infer"

SEARCH_S=$((DEADLINE_S - SECONDS))
if [ "$SEARCH_S" -gt 60 ]; then
    stage "recipe search" "$SEARCH_S" "$PY" -m experiments.recipe_search --out "$WORK/search" --gpu 0 --parallel 6 \
        --workers 2 --set fp16=true
    pkill -f "$WORK/search/runs" 2>/dev/null  # chains cut off by the deadline
    sleep 2
    cp "$WORK/search/results.md" "$WORK/search/results.jsonl" "$RESULTS/" 2>/dev/null
    (cd "$WORK/search" && tar czf "$RESULTS/search_runs.tgz" runs/*/fold_*/history.csv runs/*/fold_*/config.yaml \
        pseudo/*/pseudo.json logs 2>/dev/null)
    cat "$RESULTS/results.md" 2>/dev/null
fi

stage "cpu_fast fp16 channels_last" 60 "$PY" train.py --config configs/cpu_fast.yaml --data-dir "$DATA" --fold 0 \
    --epochs 3 --gpu 0 --workers 6 --output-dir "$WORK/runs" --name eager \
    --set fp16=true --set channels_last=true --set validation.interval=3
history "$WORK/runs/eager/fold_0"
stage "cpu_fast fp16 channels_last compile" 120 "$PY" train.py --config configs/cpu_fast.yaml --data-dir "$DATA" \
    --fold 0 --epochs 3 --gpu 0 --workers 6 --output-dir "$WORK/runs" --name compiled \
    --set fp16=true --set channels_last=true --set compile=true --set validation.interval=3
history "$WORK/runs/compiled/fold_0"
