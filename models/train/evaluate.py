#!/usr/bin/env python3
"""Evaluate exported ONNX models and classical baselines on the fixed, seeded held-out
split of the generator (seeds 1000000..1000000+n-1, 384x192) and on real photographs
(scikit-image's chelsea, coffee, motorcycle_left and scikit-learn's china, flower; never
used in training).

    python models/train/evaluate.py --n 50 --classical --ffdnet \
        --joint sdb=models/denoiseseg-sdb-small.onnx --joint plain=runs/plain.onnx \
        --seg-clean runs/seg_clean.onnx --seg-noisy runs/seg_noisy.onnx \
        --out models/train/runs/eval.json

Noise: AWGN at sigma 15/25/50 (8-bit units), seeded per image, rounded to 8 bit.
PSNR/SSIM on [0,1] RGB (SSIM: skimage, channel_axis, data_range 1). mIoU: one confusion
matrix over the whole split, mean over the classes present in the ground truth.
`--rare-n N` adds a rare-class split (N scenes rendered with rare=True, trams=True from
seeds 3000000.., 384x192): per-class IoU of every segmenting model on clean input and at
sigma 25, and which classes the pixels of person, rider, vehicles and two-wheelers were
given (key "rare"). `--real-look-n N` adds N held-out scenes of the real look (seeds
3900000.., 768x384, clean), scored whole and as 2x close-ups (key "real_look").
Every denoiser that takes sigma is run twice: with the true sigma, and with the sigma
estimated from the noisy image by the element's own estimator (`--estimator element`,
a port of src/noise.rs) or by plain Immerkaer (`--estimator immerkaer`): keys `*_est_sigma`.
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
from measure import (Onnx, estimate_sigma, estimate_sigma_element, estimate_sigma_element1,  # noqa: E402,F401
                     estimate_sigma_element_fine, estimate_sigma_immerkaer, psnr, ssim)

SIGMAS = (15, 25, 50)
HELD_OUT_SEED = 1_000_000
# a second held-out split for the rare classes: scenes.render(..., rare=True, trams=True) from seeds
# apart from the training scenes (0..), the training rare scenes (data.RARE_SEED..) and
# the main split. The main split has almost no train, motorcycle or rider pixels, so its
# per-class IoU for them is noise; this one has thousands of each.
RARE_HELD_OUT_SEED = 3_000_000
RARE_CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# a third held-out split, of the real look (scenes.render(..., look="real"), 768x384), from
# seeds apart from its training scenes (data.REAL_SEED.. with their own stream): does a
# segmenter fit its own generator's objects, whole frames and 2x close-ups of them?
REAL_LOOK_HELD_OUT_SEED = 3_900_000


def noisy_of(clean, sigma, seed):
    r = np.random.default_rng(seed)
    y = clean + r.standard_normal(clean.shape).astype(np.float32) * (sigma / 255.0)
    return (np.clip(np.round(y * 255), 0, 255) / 255.0).astype(np.float32)


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


def rare_classes(n, segmenters):
    """Per-class IoU of each segmenter on n rare-class held-out scenes, clean and at
    sigma 25 (the segmenters that take sigma get the true one), and where the ground
    truth's pixels of each rare class went (share of the class's pixels per predicted
    class, the three largest)."""
    split = [scenes.render(RARE_HELD_OUT_SEED + i, 384, 192, rare=True, trams=True) for i in range(n)]
    noisy = [noisy_of(img, 25, 7000 + i) for i, (img, _) in enumerate(split)]
    out = {}
    for name, m in segmenters.items():
        r = {}
        for tag, imgs, sg in (("clean", [im for im, _ in split], 0.0), ("sigma25", noisy, 25 / 255.0)):
            c = Conf()
            for im, (_, lab) in zip(imgs, split):
                c.add(lab, m(im, sg)["labels"])
            miou, per = c.miou()
            pixels, where = {}, {}
            for cls in RARE_CLASSES:
                row = c.m[NAMES.index(cls)]
                pixels[cls] = int(row.sum())
                if pixels[cls]:
                    where[cls] = {NAMES[j]: float(row[j] / pixels[cls]) for j in np.argsort(row)[::-1][:3] if row[j]}
            r[tag] = {"miou": miou, "per_class": per, "pixels": pixels, "predicted_as": where}
        out[name] = r
    return out


def real_look_classes(n, segmenters):
    """Per-class IoU of each segmenter on n held-out real-look scenes (768x384, clean),
    whole and as 2x close-ups (the bottom-centre quarter of each scene, 384x192, enlarged
    to 768x384: objects as near as the real clips show them)."""
    split = [scenes.render(REAL_LOOK_HELD_OUT_SEED + i, 768, 384, look="real") for i in range(n)]
    close = []
    for img, lab in split:
        h, w = lab.shape
        y0, x0 = h // 2, w // 4
        close.append((cv2.resize(img[y0:y0 + h // 2, x0:x0 + w // 2], (w, h), interpolation=cv2.INTER_LINEAR),
                      cv2.resize(lab[y0:y0 + h // 2, x0:x0 + w // 2], (w, h), interpolation=cv2.INTER_NEAREST)))
    out = {}
    for name, m in segmenters.items():
        r = {}
        for tag, pairs in (("whole", split), ("close_up", close)):
            c = Conf()
            for im, lab in pairs:
                c.add(lab, m(im, 0.0)["labels"])
            miou, per = c.miou()
            r[tag] = {"miou": miou, "per_class": per}
        out[name] = r
    return out


def mean_metric(fn, outs, refs):
    return float(np.mean([fn(o, c) for o, c in zip(outs, refs)]))


REAL_SOURCES = {
    "chelsea.png": "scikit-image data, Chelsea the cat, CC0 (Stefan van der Walt)",
    "coffee.png": "scikit-image data, coffee cup, CC0 (Rachel Michetti)",
    "motorcycle_left.png": "scikit-image data, Middlebury 2014 stereo benchmark (Scharstein et al.), "
                           "4x down-sampled; shipped in the BSD-3-Clause scikit-image wheel",
    "china.jpg": "scikit-learn 1.9.1 wheel, sklearn/datasets/images: a temple in China, CC BY 2.0 "
                 "(danielbuechele on Flickr), JPEG",
    "flower.jpg": "scikit-learn 1.9.1 wheel, sklearn/datasets/images: a flower, CC BY 2.0 (vultilion on Flickr), JPEG",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--joint", action="append", default=[], help="name=path.onnx of a joint/denoise model (repeatable)")
    ap.add_argument("--seg-clean", default=None, help="segmenter trained on clean images (onnx)")
    ap.add_argument("--seg-noisy", default=None, help="segmenter trained on noisy images (onnx)")
    ap.add_argument("--ffdnet", action="store_true", help="also evaluate the pretrained colour FFDNet (torch)")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--classical", action="store_true", help="OpenCV NLM and ffmpeg hqdn3d baselines")
    ap.add_argument("--estimator", default="element", choices=["element", "element-fine", "element1", "immerkaer"],
                    help="noise estimate for the *_est_sigma runs (element-fine: the element's estimator before its "
                         "coarse scale, behind the figures of defaults 1.8.0 to 1.10.0; element1: its one-pass estimator "
                         "before default 1.8.0)")
    ap.add_argument("--sigmas", default="15,25,50")
    ap.add_argument("--out", required=True)
    ap.add_argument("--real-look-n", type=int, default=0,
                    help="also score segmentation on N held-out real-look scenes, whole and as 2x close-ups "
                         "(seeds 3900000.., 768x384; 0: skip)")
    ap.add_argument("--rare-n", type=int, default=0,
                    help="also score segmentation on N rare-class held-out scenes (seeds 3000000..; 0: skip)")
    ap.add_argument("--merge", default=None, help="json of an earlier run (same --n) to merge these results into")
    args = ap.parse_args()
    global estimate_sigma
    estimate_sigma = {"element": estimate_sigma_element, "element-fine": estimate_sigma_element_fine,
                      "element1": estimate_sigma_element1, "immerkaer": estimate_sigma_immerkaer}[args.estimator]
    sigmas = [int(v) for v in args.sigmas.split(",")]
    t0 = time.time()
    split = [scenes.render(HELD_OUT_SEED + i, 384, 192) for i in range(args.n)]
    real = []
    real_names = data.NATURAL_EVAL + data.SKLEARN_EVAL
    for im in data.natural_images(data.NATURAL_EVAL) + data.sklearn_images():
        h, w = im.shape[:2]
        real.append(im[: h // 8 * 8, : w // 8 * 8].astype(np.float32) / 255.0)
    if len(real) != len(real_names):
        raise SystemExit(f"found {len(real)} of the real photographs {real_names}")
    models = {}
    for spec in args.joint:
        name, path = spec.split("=", 1)
        models[name] = Onnx(path)
    segc = Onnx(args.seg_clean) if args.seg_clean else None
    segn = Onnx(args.seg_noisy) if args.seg_noisy else None
    dens = dict(models)
    if args.ffdnet:
        import torch
        import nets
        import ffdnet_weights
        torch.set_num_threads(2)
        net = nets.FFDNet().eval()
        net.load_state_dict(ffdnet_weights.load())

        def ffd(img, sigma):
            with torch.no_grad():
                x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
                return {"denoised": net(x, torch.full((1, 1, 1, 1), sigma)).clamp(0, 1)[0].numpy().transpose(1, 2, 0)}
        dens["ffdnet_pretrained"] = ffd
    res = {"held_out": {"seed0": HELD_OUT_SEED, "n": args.n, "size": [384, 192]},
           "real_images": {nm: {"size": [int(r.shape[1]), int(r.shape[0])], "source": REAL_SOURCES.get(nm, "")}
                           for nm, r in zip(real_names, real)},
           "noise": "AWGN, rounded to 8 bit; synthetic image i at sigma s uses seed 1000*s+i, real photo i seed 5000*s+i",
           "estimator": args.estimator, "models": {k: v for k, v in (s.split("=", 1) for s in args.joint)},
           # which estimator each model's *_est_sigma figures were measured with (a merged run keeps
           # the earlier models' entries; models missing here predate the key: element1)
           "estimator_of": {k: args.estimator for k in list(dens) + (["seg_noisy"] if segn else [])},
           "synthetic": {}, "real": {}}
    # ---- segmentation of clean input (upper bound)
    if segc:
        c = Conf()
        for img, lab in split:
            c.add(lab, segc(img, 0.0)["labels"])
        res["synthetic"]["miou_seg_clean_on_clean"], res["synthetic"]["per_class_seg_clean_on_clean"] = c.miou()
    if segn:
        c = Conf()
        for img, lab in split:
            c.add(lab, segn(img, 0.0)["labels"])
        res["synthetic"]["miou_seg_noisy_on_clean"] = c.miou()[0]
    for name, m in models.items():
        if "labels" in m.outs:
            c = Conf()
            for img, lab in split:
                c.add(lab, m(img, 0.0)["labels"])
            res["synthetic"][f"miou_{name}_on_clean"], res["synthetic"][f"per_class_{name}_on_clean"] = c.miou()
    print(f"clean-input mIoU done ({(time.time() - t0) / 60:.1f} min)", flush=True)
    refs = [c for c, _ in split]
    # classical baselines' strength is tuned on training scenes (seeds 0..2), not on the held-out split
    tune_imgs = [scenes.render(i, 384, 192)[0] for i in range(3)]
    labs = [lab for _, lab in split]
    for sg in sigmas:
        r = {}
        noisy = [noisy_of(img, sg, 1000 * sg + i) for i, (img, _) in enumerate(split)]
        est = [estimate_sigma(n) for n in noisy]
        r["psnr_noisy"] = mean_metric(psnr, noisy, refs)
        r["ssim_noisy"] = mean_metric(ssim, noisy, refs)
        r["est_sigma_mean"] = float(np.mean(est)) * 255
        r["est_sigma_min"], r["est_sigma_max"] = float(np.min(est)) * 255, float(np.max(est)) * 255
        for name, m in dens.items():
            for tag, sgs in (("", [sg / 255.0] * len(noisy)), ("_est_sigma", est)):
                outs = [m(n, s) for n, s in zip(noisy, sgs)]
                if "denoised" in outs[0]:
                    den = [o["denoised"] for o in outs]
                    r[f"psnr_{name}{tag}"] = mean_metric(psnr, den, refs)
                    r[f"ssim_{name}{tag}"] = mean_metric(ssim, den, refs)
                    if segc and not tag:
                        c = Conf()
                        for d, lab in zip(den, labs):
                            c.add(lab, segc(d, 0.0)["labels"])
                        r[f"miou_segclean_on_{name}_output"] = c.miou()[0]
                if "labels" in outs[0]:
                    c = Conf()
                    for o, lab in zip(outs, labs):
                        c.add(lab, o["labels"])
                    r[f"miou_{name}{tag}"] = c.miou()[0]
        if segc:
            c = Conf()
            for n, lab in zip(noisy, labs):
                c.add(lab, segc(n, 0.0)["labels"])
            r["miou_seg_clean_on_noisy"] = c.miou()[0]
        if segn:
            for tag, sgs in (("", [sg / 255.0] * len(noisy)), ("_est_sigma", est)):
                c = Conf()
                for n, s, lab in zip(noisy, sgs, labs):
                    c.add(lab, segn(n, s)["labels"])
                r[f"miou_seg_noisy_on_noisy{tag}"] = c.miou()[0]
        if args.classical:
            hn = tune(nlm, tune_imgs, sg, (0.5, 0.7, 0.9, 1.1))
            r["nlm_h_factor"] = hn
            den = [nlm(n, sg, hn) for n in noisy]
            r["psnr_nlm"] = mean_metric(psnr, den, refs)
            r["ssim_nlm"] = mean_metric(ssim, den, refs)
            if shutil.which("ffmpeg"):
                hq = tune(hqdn3d, tune_imgs, sg, (0.3, 0.6, 1.0, 1.5, 2.5, 4.0, 6.0, 9.0))
                r["hqdn3d_factor"] = hq
                den = [hqdn3d(n, sg, hq) for n in noisy]
                r["psnr_hqdn3d"] = mean_metric(psnr, den, refs)
                r["ssim_hqdn3d"] = mean_metric(ssim, den, refs)
            else:
                print("ffmpeg not found: hqdn3d skipped", flush=True)
        res["synthetic"][f"sigma{sg}"] = r
        # ---- real photographs
        q = {}
        rn = [noisy_of(c, sg, 5000 * sg + i) for i, c in enumerate(real)]
        rest = [estimate_sigma(n) for n in rn]
        q["psnr_noisy"] = mean_metric(psnr, rn, real)
        q["ssim_noisy"] = mean_metric(ssim, rn, real)
        q["est_sigma"] = [float(e) * 255 for e in rest]
        # what the estimator should read: clipping to [0, 255] removes part of the noise
        q["clipped_sigma"] = [float(np.std(n - c)) * 255 for n, c in zip(rn, real)]
        for name, m in dens.items():
            for tag, sgs in (("", [sg / 255.0] * len(rn)), ("_est_sigma", rest)):
                outs = [m(n, s) for n, s in zip(rn, sgs)]
                if "denoised" in outs[0]:
                    den = [o["denoised"] for o in outs]
                    q[f"psnr_{name}{tag}"] = mean_metric(psnr, den, real)
                    q[f"ssim_{name}{tag}"] = mean_metric(ssim, den, real)
                    if not tag:
                        q[f"psnr_{name}_per_image"] = [psnr(d, c) for d, c in zip(den, real)]
        if args.classical:
            den = [nlm(n, sg, r["nlm_h_factor"]) for n in rn]
            q["psnr_nlm"] = mean_metric(psnr, den, real)
            q["ssim_nlm"] = mean_metric(ssim, den, real)
            q["psnr_nlm_per_image"] = [psnr(d, c) for d, c in zip(den, real)]
            if "hqdn3d_factor" in r:
                den = [hqdn3d(n, sg, r["hqdn3d_factor"]) for n in rn]
                q["psnr_hqdn3d"] = mean_metric(psnr, den, real)
                q["ssim_hqdn3d"] = mean_metric(ssim, den, real)
        res["real"][f"sigma{sg}"] = q
        print(f"sigma {sg} ({(time.time() - t0) / 60:.1f} min): synthetic {json.dumps(r)}\n  real {json.dumps(q)}", flush=True)
    if args.rare_n:
        res["rare_split"] = {"seed0": RARE_HELD_OUT_SEED, "n": args.rare_n, "size": [384, 192], "sigma": 25,
                             "render": "rare=True, trams=True"}
        res["rare"] = rare_classes(args.rare_n, {**{k: m for k, m in models.items() if "labels" in m.outs},
                                                 **({"seg_clean": segc} if segc else {})})
        print(f"rare-class split done ({(time.time() - t0) / 60:.1f} min): "
              + json.dumps({k: {t: v[t]["per_class"].get("train") for t in ("clean", "sigma25")}
                            for k, v in res["rare"].items()}), flush=True)
    if args.real_look_n:
        res["real_look_split"] = {"seed0": REAL_LOOK_HELD_OUT_SEED, "n": args.real_look_n, "size": [768, 384],
                                  "close_up": "bottom-centre quarter enlarged 2x", "render": 'look="real"'}
        res["real_look"] = real_look_classes(args.real_look_n, {**{k: m for k, m in models.items() if "labels" in m.outs},
                                                                **({"seg_clean": segc} if segc else {})})
        print(f"real-look split done ({(time.time() - t0) / 60:.1f} min): "
              + json.dumps({k: {t: round(v[t]["miou"], 3) for t in ("whole", "close_up")}
                            for k, v in res["real_look"].items()}), flush=True)
    res["eval_minutes"] = (time.time() - t0) / 60
    if args.merge:
        old = json.load(open(args.merge))
        if old["held_out"] != res["held_out"]:
            raise SystemExit(f"--merge: {args.merge} was measured on a different split")
        if "rare_split" in old and "rare_split" in res and old["rare_split"] != res["rare_split"]:
            raise SystemExit(f"--merge: {args.merge} was measured on a different rare-class split")

        def deep(a, b):
            for k, v in b.items():
                if isinstance(v, dict) and isinstance(a.get(k), dict):
                    deep(a[k], v)
                else:
                    a[k] = v
        res["models"] = {**old.get("models", {}), **res["models"]}
        res["eval_minutes"] += old.get("eval_minutes", 0.0)
        deep(old, res)
        res = old
    json.dump(res, open(args.out, "w"), indent=1)
    print(json.dumps({k: v for k, v in res["synthetic"].items() if not k.startswith("per_class")}, indent=1))


if __name__ == "__main__":
    main()
