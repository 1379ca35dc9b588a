#!/usr/bin/env bash
# GPU smoke benchmark for a CUDA machine (never run by `make test` or `make bench`):
#   1. one short epoch of the recipe config (configs/seed-efficientnet-b7.json, UNet EfficientNet-b7,
#      fp16 AMP, random-init encoder) through train.py on a small synthetic dataset made on the spot;
#   2. the inference benchmark (bench/infer.py) on CUDA: the naive loop vs the engine in fp32 / fp16.
# Prints the GPU name, train.py's img/s and the engine's frames/s.
#
#   bash bench/gpu_smoke.sh            # PY=python3 bash bench/gpu_smoke.sh to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d -t gpu_smoke.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "== GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"

echo "== data: 4 synthetic sequences x 20 frames, a label every 2 frames, 2 folds by sequence"
"$PY" -m dataset.synthetic --out "$WORK/data" --sequences 4 --frames 20 --label-every 2 \
    --test-per-sequence 0 --workers 2
"$PY" -m dataset.create_kfolds --data-dir "$WORK/data" --folds 2

echo "== training: recipe config, fp16 AMP, 1 epoch"
"$PY" train.py --config configs/seed-efficientnet-b7.json --data-dir "$WORK/data" --fold 0 \
    --epochs 1 --gpu 0 --workers 2 --output-dir "$WORK/runs" --name gpu_smoke \
    --set fp16=true --set encoder_weights=null 2>&1 | tee "$WORK/train.log"
echo "train.py throughput: $(grep -Eo '[0-9.]+ img/s' "$WORK/train.log" | tail -n 1)"

echo "== inference: naive loop vs the engine on CUDA (2 models + hflip, 416x640)"
"$PY" -m bench.infer --device cuda --frames 32 --work-dir "$WORK" | grep -v '^ \|^[{}]\|^\]'
