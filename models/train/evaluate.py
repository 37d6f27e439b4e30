#!/usr/bin/env python3
"""Evaluate exported ONNX models and classical baselines on the fixed, seeded held-out
split of the generator (seeds 1000000..1000000+n-1, 384x192) and on real photographs
(scikit-image's chelsea, coffee, motorcycle_left; never used in training).

    python models/train/evaluate.py --joint models/denoiseseg-sdb-small.onnx \
        --plain runs/plain.onnx --seg-clean runs/seg_clean.onnx --seg-noisy runs/seg_noisy.onnx \
        --out models/train/runs/eval.json

Noise: AWGN at sigma 15/25/50 (8-bit units), seeded per image, rounded to 8 bit.
PSNR/SSIM on [0,1] RGB (SSIM: skimage, channel_axis, data_range 1). mIoU: one confusion
matrix over the whole split, mean over the classes present in the ground truth.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import scenes  # noqa: E402
from cityscapes_labels import NAMES, NUM_CLASSES  # noqa: E402

SIGMAS = (15, 25, 50)
HELD_OUT_SEED = 1_000_000


def psnr(a, b):
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def ssim(a, b):
    from skimage.metrics import structural_similarity
    return float(structural_similarity(a, b, channel_axis=2, data_range=1.0))


def noisy_of(clean, sigma, seed):
    r = np.random.default_rng(seed)
    y = clean + r.standard_normal(clean.shape).astype(np.float32) * (sigma / 255.0)
    return (np.clip(np.round(y * 255), 0, 255) / 255.0).astype(np.float32)


def estimate_sigma(img):
    """Immerkaer (1996) fast noise std estimate on the grey image, [0,1] scale."""
    g = img.mean(2).astype(np.float64)
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    r = cv2.filter2D(g, -1, k)[1:-1, 1:-1]
    h, w = g.shape
    return float(np.sqrt(np.pi / 2) * np.abs(r).sum() / (6 * (w - 2) * (h - 2)))


class Onnx:
    def __init__(self, path):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        self.s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.outs = [o.name for o in self.s.get_outputs()]
        self.has_sigma = any(i.name == "sigma" for i in self.s.get_inputs())

    def __call__(self, img, sigma):
        feed = {"image": img.transpose(2, 0, 1)[None].astype(np.float32)}
        if self.has_sigma:
            feed["sigma"] = np.full((1, 1, 1, 1), sigma, np.float32)
        res = dict(zip(self.outs, self.s.run(None, feed)))
        out = {}
        if "denoised" in res:
            out["denoised"] = res["denoised"][0].transpose(1, 2, 0)
        if "labels" in res:
            out["labels"] = res["labels"][0]
        return out


def nlm(img, sigma, h_factor):
    u8 = np.round(img * 255).astype(np.uint8)
    h = max(1.0, h_factor * sigma)
    out = cv2.fastNlMeansDenoisingColored(u8, None, h, h, 7, 21)
    return out.astype(np.float32) / 255.0


def hqdn3d(img, sigma, factor):
    if not shutil.which("ffmpeg"):
        return None
    with tempfile.TemporaryDirectory() as d:
        a, b = os.path.join(d, "a.png"), os.path.join(d, "b.png")
        cv2.imwrite(a, np.round(img[..., ::-1] * 255).astype(np.uint8))
        ls = factor * sigma
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", a, "-vf",
                        f"hqdn3d={ls:.2f}:{ls * 0.75:.2f}:0:0", b], check=True)
        return cv2.imread(b)[..., ::-1].astype(np.float32) / 255.0


def tune(fn, imgs, sigma, grid):
    best = None
    for f in grid:
        p = np.mean([psnr(fn(noisy_of(c, sigma, 7 + i), sigma, f), c) for i, c in enumerate(imgs)])
        if best is None or p > best[1]:
            best = (f, p)
    return best[0]


class Conf:
    def __init__(self):
        self.m = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)

    def add(self, gt, pr):
        v = gt < NUM_CLASSES
        self.m += np.bincount(gt[v].astype(np.int64) * NUM_CLASSES + pr[v].astype(np.int64),
                              minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)

    def miou(self):
        tp = np.diag(self.m).astype(np.float64)
        gt = self.m.sum(1)
        un = gt + self.m.sum(0) - tp
        iou = np.where(un > 0, tp / np.maximum(un, 1), np.nan)
        present = gt > 0
        return float(np.nanmean(iou[present])), {NAMES[i]: float(iou[i]) for i in range(NUM_CLASSES) if present[i]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--joint", action="append", default=[], help="name=path.onnx of a joint/denoise model (repeatable)")
    ap.add_argument("--seg-clean", default=None, help="segmenter trained on clean images (onnx)")
    ap.add_argument("--seg-noisy", default=None, help="segmenter trained on noisy images (onnx)")
    ap.add_argument("--ffdnet", action="store_true", help="also evaluate the pretrained colour FFDNet (torch)")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--classical", action="store_true", help="OpenCV NLM and ffmpeg hqdn3d baselines")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.time()
    split = [scenes.render(HELD_OUT_SEED + i, 384, 192) for i in range(args.n)]
    real = []
    for im in data.natural_images(data.NATURAL_EVAL):
        h, w = im.shape[:2]
        real.append(im[: h // 8 * 8, : w // 8 * 8].astype(np.float32) / 255.0)
    models = {}
    for spec in args.joint:
        name, path = spec.split("=", 1)
        models[name] = Onnx(path)
    segc = Onnx(args.seg_clean) if args.seg_clean else None
    segn = Onnx(args.seg_noisy) if args.seg_noisy else None
    ffd = None
    if args.ffdnet:
        import torch
        import nets
        import ffdnet_weights
        torch.set_num_threads(2)
        net = nets.FFDNet().eval()
        net.load_state_dict(ffdnet_weights.load())

        def ffd(img, sigma):
            with torch.no_grad():
                x = torch.from_numpy(img.transpose(2, 0, 1))[None]
                return {"denoised": net(x, torch.full((1, 1, 1, 1), sigma)).clamp(0, 1)[0].numpy().transpose(1, 2, 0)}
    res = {"held_out": {"seed0": HELD_OUT_SEED, "n": args.n, "size": [384, 192]}, "synthetic": {}, "real": {}}
    # ---- segmentation of clean input (upper bound)
    if segc:
        c = Conf()
        for img, lab in split:
            c.add(lab, segc(img, 0.0)["labels"])
        res["synthetic"]["miou_seg_clean_on_clean"] = c.miou()[0]
        res["synthetic"]["per_class_seg_clean_on_clean"] = c.miou()[1]
    for name, m in models.items():
        if "labels" in m.outs:
            c = Conf()
            for img, lab in split:
                c.add(lab, m(img, 0.0)["labels"])
            res["synthetic"][f"miou_{name}_on_clean"] = c.miou()[0]
    for sg in SIGMAS:
        r = {}
        noisy = [noisy_of(img, sg, 1000 * sg + i) for i, (img, _) in enumerate(split)]
        r["psnr_noisy"] = float(np.mean([psnr(n, c) for n, (c, _) in zip(noisy, split)]))
        for name, m in list(models.items()) + ([("ffdnet_pretrained", ffd)] if ffd else []):
            outs = [m(n, sg / 255.0) for n in noisy]
            if "denoised" in outs[0]:
                r[f"psnr_{name}"] = float(np.mean([psnr(o["denoised"], c) for o, (c, _) in zip(outs, split)]))
                r[f"ssim_{name}"] = float(np.mean([ssim(o["denoised"], c) for o, (c, _) in zip(outs, split)]))
            if "labels" in outs[0]:
                c = Conf()
                for o, (_, lab) in zip(outs, split):
                    c.add(lab, o["labels"])
                r[f"miou_{name}"] = c.miou()[0]
            if "denoised" in outs[0] and segc:
                c = Conf()
                for o, (_, lab) in zip(outs, split):
                    c.add(lab, segc(o["denoised"], 0.0)["labels"])
                r[f"miou_segclean_on_{name}_output"] = c.miou()[0]
            if name in models:  # with the element's own noise estimate instead of the true sigma
                outs = [m(n, estimate_sigma(n)) for n in noisy]
                if "denoised" in outs[0]:
                    r[f"psnr_{name}_est_sigma"] = float(np.mean([psnr(o["denoised"], c) for o, (c, _) in zip(outs, split)]))
        if segc:
            c = Conf()
            for n, (_, lab) in zip(noisy, split):
                c.add(lab, segc(n, 0.0)["labels"])
            r["miou_seg_clean_on_noisy"] = c.miou()[0]
        if segn:
            c = Conf()
            for n, (_, lab) in zip(noisy, split):
                c.add(lab, segn(n, sg / 255.0)["labels"])
            r["miou_seg_noisy_on_noisy"] = c.miou()[0]
        if args.classical:
            hn = tune(nlm, [c for c, _ in split[:3]], sg, (0.5, 0.7, 0.9, 1.1))
            r["nlm_h_factor"] = hn
            den = [nlm(n, sg, hn) for n in noisy]
            r["psnr_nlm"] = float(np.mean([psnr(d, c) for d, (c, _) in zip(den, split)]))
            r["ssim_nlm"] = float(np.mean([ssim(d, c) for d, (c, _) in zip(den, split)]))
            if shutil.which("ffmpeg"):
                hq = tune(hqdn3d, [c for c, _ in split[:3]], sg, (0.3, 0.6, 1.0, 1.5, 2.5))
                r["hqdn3d_factor"] = hq
                den = [hqdn3d(n, sg, hq) for n in noisy]
                r["psnr_hqdn3d"] = float(np.mean([psnr(d, c) for d, (c, _) in zip(den, split)]))
                r["ssim_hqdn3d"] = float(np.mean([ssim(d, c) for d, (c, _) in zip(den, split)]))
        res["synthetic"][f"sigma{sg}"] = r
        # ---- real photographs
        q = {}
        rn = [noisy_of(c, sg, 5000 * sg + i) for i, c in enumerate(real)]
        q["psnr_noisy"] = float(np.mean([psnr(n, c) for n, c in zip(rn, real)]))
        for name, m in list(models.items()) + ([("ffdnet_pretrained", ffd)] if ffd else []):
            outs = [m(n, sg / 255.0) for n in rn]
            if "denoised" in outs[0]:
                q[f"psnr_{name}"] = float(np.mean([psnr(o["denoised"], c) for o, c in zip(outs, real)]))
                q[f"ssim_{name}"] = float(np.mean([ssim(o["denoised"], c) for o, c in zip(outs, real)]))
                if name in models:
                    outs = [m(n, estimate_sigma(n)) for n in rn]
                    q[f"psnr_{name}_est_sigma"] = float(np.mean([psnr(o["denoised"], c) for o, c in zip(outs, real)]))
        if args.classical:
            den = [nlm(n, sg, r["nlm_h_factor"]) for n in rn]
            q["psnr_nlm"] = float(np.mean([psnr(d, c) for d, c in zip(den, real)]))
            q["ssim_nlm"] = float(np.mean([ssim(d, c) for d, c in zip(den, real)]))
            if "hqdn3d_factor" in r:
                den = [hqdn3d(n, sg, r["hqdn3d_factor"]) for n in rn]
                q["psnr_hqdn3d"] = float(np.mean([psnr(d, c) for d, c in zip(den, real)]))
                q["ssim_hqdn3d"] = float(np.mean([ssim(d, c) for d, c in zip(den, real)]))
        res["real"][f"sigma{sg}"] = q
        print(f"sigma {sg}: synthetic {json.dumps(r)}\n  real {json.dumps(q)}", flush=True)
    res["eval_minutes"] = (time.time() - t0) / 60
    json.dump(res, open(args.out, "w"), indent=1)
    print(json.dumps({k: v for k, v in res["synthetic"].items() if not k.startswith("per_class")}, indent=1))


if __name__ == "__main__":
    main()
