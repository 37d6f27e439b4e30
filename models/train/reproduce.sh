#!/usr/bin/env bash
# Reproduces every shipped model, baseline and the model-card numbers, in this order.
# Each train.py command is resumable: re-running this script continues where it stopped.
# CPU: about 75 minutes on 2 cores; much less on a GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
T=models/train
R=$T/runs
# the default joint model (SDB, K=2): 800 steps, then resumed to 1600 (warm restart of the cosine schedule)
$PY $T/train.py --model sdb   --out $R/sdb   --steps 800
$PY $T/train.py --model sdb   --out $R/sdb   --steps 1600
# baselines
$PY $T/train.py --model plain --out $R/plain --steps 1600 --width 50 --depth 6
$PY $T/train.py --model seg   --out $R/seg_clean --steps 1500 --seg-input clean
$PY $T/train.py --model seg   --out $R/seg_noisy --steps 1500 --seg-input noisy
$PY $T/train.py --model cascade --out $R/cascade --steps 300 --width 50 --depth 6 \
    --init $R/plain/last.pt --frozen-seg $R/seg_clean/last.pt --lr 5e-4
# the quality variant: pretrained FFDNet + LightSeg(96) trained on its output
$PY $T/train.py --model ffdseg --out $R/ffdseg --steps 400 --seg-width 96 --init $R/seg_clean/last.pt --lr 1e-3
# export (+ parity check)
for m in plain seg_clean seg_noisy cascade; do
  $PY $T/export.py --ckpt $R/$m/last.pt --onnx $R/$m.onnx --no-sidecar
done
$PY $T/export.py --ckpt $R/sdb/last.pt --onnx models/denoiseseg-sdb-small.onnx --no-sidecar
$PY $T/export.py --ckpt $R/ffdseg/last.pt --onnx models/denoiseseg-sdb-quality.onnx --no-sidecar
# evaluation
$PY $T/evaluate.py --n 50 --classical --ffdnet \
    --joint sdb=models/denoiseseg-sdb-small.onnx --joint quality=models/denoiseseg-sdb-quality.onnx \
    --joint plain=$R/plain.onnx --joint cascade=$R/cascade.onnx \
    --seg-clean $R/seg_clean.onnx --seg-noisy $R/seg_noisy.onnx --out $R/eval.json
# sidecars with the measured metrics
$PY $T/card_metrics.py $R/eval.json
