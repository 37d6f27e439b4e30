#!/usr/bin/env python3
"""Segmentation on real street frames: mIoU, pixel accuracy and flicker of an ONNX model.

    python models/eval-real/evaluate_real.py [--model models/denoiseseg-sdb-small.onnx]
        [--footage ../shared/footage] [--sigmas 0,25] [--flicker-n 50 --flicker-start 300]
        [--json out.json]

Runs the model the way the element does (ONNX Runtime, CPU provider): the frame as RGB
float32 [1,3,H,W] in [0,1], H and W padded up to the sidecar's size_multiple by edge
replication and the outputs cropped back; the `sigma` input, when the model has one,
gets the true noise std on the [0,1] scale (0 for clean input). Output `labels` uint8
[N,H,W] is taken as is; a `logits` output [N,C,h,w] is upsampled bilinearly
(align_corners=False) to the padded size and arg-maxed. Tensor names come from the
sidecar `<model>.toml` ([inputs], [outputs]).

Noise: AWGN of std sigma/255 added to the 8-bit frame, clipped to [0,1] and rounded to
8 bit like a real frame; the generator is numpy's default_rng(seed + 1000*sigma + i),
i the frame's position in polygons.json (labelled set) or its frame index (flicker).

Labelled set: the frames and coarse polygons of polygons.json (make_labels.py; 255 =
ignore). Per condition: one confusion matrix over all labelled pixels of the set; mIoU =
mean IoU over the classes present (with labelled pixels) in the set; pixel accuracy =
correct / labelled pixels; per-class IoU; the same per clip (its classes present); and
for each labelled class the share of its pixels given each predicted class.

Flicker: the model on --flicker-n consecutive frames of the static street camera
(street-camera.avi, from --flicker-start), clean and at each noisy sigma: the share of
all pixels whose class differs from the previous frame's, mean over the n-1 pairs
(people walking account for some of it; flicker-free is not 0). Measured on the
model's own maps and on the maps the element shows with its default
`class-confirm-frames=2` (--confirm-frames; `stabilized`): a pixel shows a new class
only once the model has given it for that many frames in a row, at once when the new
or the shown class is an object class (the sidecar's `object`, by default person,
rider and the vehicles), as src/stabilize.rs does.

Progress goes to stderr. The frames are for evaluation only: never train on them.
"""
import argparse
import json
import os
import sys
import time
import tomllib

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from make_labels import IGNORE, default_footage, load_set, read_frames, stem  # noqa: E402
from cityscapes_labels import NAMES, NUM_CLASSES  # noqa: E402

FLICKER_CLIP = "street-camera.avi"
# The Cityscapes classes with instances: the element's default object classes.
OBJECTS = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Model:
    def __init__(self, path, threads):
        import onnxruntime as ort
        side = os.path.splitext(path)[0] + ".toml"
        with open(side, "rb") as f:
            sc = tomllib.load(f)
        self.name = "%s %s" % (sc.get("name", os.path.basename(path)), sc.get("version", "?"))
        self.multiple = int(sc.get("size_multiple", 1))
        ins, outs = sc.get("inputs", {}), sc.get("outputs", {})
        self.image = ins.get("image", "image")
        self.sigma = ins.get("sigma")
        self.labels = outs.get("labels")
        self.logits = outs.get("logits")
        if not (self.labels or self.logits):
            raise SystemExit("%s: the sidecar names neither a labels nor a logits output" % side)
        # The object classes, as the element reads them (src/model.rs, ClassInfo::is_object).
        classes = sc.get("classes") or [{"id": i, "name": n} for i, n in enumerate(NAMES)]
        self.objects = [c["id"] for c in classes if c.get("object", c["name"] in OBJECTS)]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        names = {i.name for i in self.s.get_inputs()}
        if self.image not in names:
            raise SystemExit("%s has no input %r" % (path, self.image))
        if self.sigma and self.sigma not in names:
            raise SystemExit("%s has no input %r" % (path, self.sigma))

    def __call__(self, rgb, sigma01):
        """rgb: float32 [H,W,3] in [0,1]; returns uint8 [H,W] train ids."""
        h, w = rgb.shape[:2]
        m = self.multiple
        ph, pw = -(-h // m) * m, -(-w // m) * m
        x = np.pad(rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge") if (ph, pw) != (h, w) else rgb
        feed = {self.image: np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32)}
        if self.sigma:
            feed[self.sigma] = np.full((1, 1, 1, 1), sigma01, np.float32)
        if self.labels:
            lab = self.s.run([self.labels], feed)[0][0]
        else:
            lg = self.s.run([self.logits], feed)[0][0]  # [C,h',w']
            up = np.stack([cv2.resize(c, (pw, ph), interpolation=cv2.INTER_LINEAR) for c in lg])
            lab = up.argmax(0)
        return np.asarray(lab[:h, :w], np.uint8)


def to_rgb01(bgr):
    return (bgr[:, :, ::-1].astype(np.float32) / 255.0)


def add_noise(rgb01, sigma, seed):
    if sigma == 0:
        return rgb01
    r = np.random.default_rng(seed)
    y = rgb01 + r.standard_normal(rgb01.shape).astype(np.float32) * (sigma / 255.0)
    return (np.clip(np.round(y * 255.0), 0, 255) / 255.0).astype(np.float32)


def confusion(gt, pr):
    m = gt != IGNORE
    idx = gt[m].astype(np.int64) * NUM_CLASSES + np.minimum(pr[m], NUM_CLASSES - 1).astype(np.int64)
    return np.bincount(idx, minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)


def scores(cm):
    gt_n = cm.sum(1)
    present = np.nonzero(gt_n)[0]
    tp = np.diag(cm).astype(np.float64)
    union = gt_n + cm.sum(0) - tp
    iou = {NAMES[c]: float(tp[c] / union[c]) for c in present}
    return {
        "miou": float(np.mean(list(iou.values()))) if iou else float("nan"),
        "pixel_accuracy": float(tp.sum() / max(1, cm.sum())),
        "labelled_pixels": int(cm.sum()),
        "iou": iou,
    }


def given(cm, top=4):
    """for each labelled class: the shares of its pixels per predicted class (largest first)."""
    out = {}
    for c in np.nonzero(cm.sum(1))[0]:
        row = cm[c] / cm[c].sum()
        order = np.argsort(-row)[:top]
        out[NAMES[c]] = {NAMES[p]: round(float(row[p]), 4) for p in order if row[p] >= 0.005}
    return out


class Stabilizer:
    """The element's class map stabilization (src/stabilize.rs, `class-confirm-frames`)."""

    def __init__(self, confirm, objects):
        self.confirm, self.objects = confirm, np.zeros(256, bool)
        self.objects[list(objects)] = True
        self.shown = None

    def __call__(self, lab):
        if self.confirm <= 1:
            return lab
        if self.shown is None:
            self.shown, self.cand, self.held = lab.copy(), lab.copy(), np.ones(lab.shape, np.int32)
            return lab
        same = lab == self.cand
        self.held = np.where(same, self.held + 1, 1)
        self.cand = lab.copy()
        switch = (lab != self.shown) & ((self.held >= self.confirm) | self.objects[lab] | self.objects[self.shown])
        self.shown = np.where(switch, lab, self.shown)
        return self.shown.copy()


def changes_of(maps):
    return [float(np.mean(b != a)) for a, b in zip(maps, maps[1:])]


def flicker(model, footage, start, n, sigma, seed, confirm):
    frames = read_frames(os.path.join(footage, FLICKER_CLIP), range(start, start + n))
    maps = []
    t0 = time.time()
    for k, i in enumerate(range(start, start + n)):
        maps.append(model(add_noise(to_rgb01(frames[i]), sigma, seed + 1000 * sigma + i), sigma / 255.0))
        log("  flicker sigma %d: frame %d/%d (%.1f s/frame)" % (sigma, k + 1, n, (time.time() - t0) / (k + 1)))
    changes = changes_of(maps)
    stab = Stabilizer(confirm, model.objects)
    stabilized = changes_of([stab(m) for m in maps])
    return {"frames": n, "start": start, "mean": float(np.mean(changes)), "max": float(np.max(changes)),
            "per_pair": [round(c, 5) for c in changes],
            "stabilized": {"confirm_frames": confirm, "mean": float(np.mean(stabilized)),
                           "max": float(np.max(stabilized))}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "models", "denoiseseg-sdb-small.onnx"))
    ap.add_argument("--footage", default=default_footage(), help="folder with the clips (default: ../shared/footage from the repo root)")
    ap.add_argument("--polygons", default=os.path.join(HERE, "polygons.json"))
    ap.add_argument("--sigmas", default="0,25", help="noise conditions in 8-bit units, 0 = clean (default 0,25)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed base")
    ap.add_argument("--flicker-n", type=int, default=50, help="consecutive street-camera frames for the flicker (0: skip)")
    ap.add_argument("--flicker-start", type=int, default=300)
    ap.add_argument("--flicker-sigmas", default=None, help="sigmas for the flicker (default: --sigmas)")
    ap.add_argument("--confirm-frames", type=int, default=2,
                    help="the element's class-confirm-frames for the stabilized flicker (default 2, the element's)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    ap.add_argument("--save-pred", default=None, help="folder to write predicted label PNGs and colour maps into")
    ap.add_argument("--json", default=None, help="write the results here")
    a = ap.parse_args()

    sigmas = [int(s) for s in a.sigmas.split(",") if s != ""]
    fsigmas = sigmas if a.flicker_sigmas is None else [int(s) for s in a.flicker_sigmas.split(",") if s != ""]
    model = Model(a.model, a.threads)
    log("model %s (%s), footage %s" % (model.name, a.model, a.footage))
    data = load_set(a.footage, a.polygons)
    clips = sorted({e["clip"] for e, _, _ in data})
    res = {"model": os.path.relpath(os.path.abspath(a.model), REPO), "model_name": model.name,
           "frames": [[e["clip"], e["frame"]] for e, _, _ in data], "conditions": {}}
    if a.save_pred:
        os.makedirs(a.save_pred, exist_ok=True)
        from make_labels import overlay
    t0 = time.time()
    for sigma in sigmas:
        cm_all = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
        cm_clip = {c: np.zeros_like(cm_all) for c in clips}
        for i, (e, f, gt) in enumerate(data):
            x = add_noise(to_rgb01(f), sigma, a.seed + 1000 * sigma + i)
            pr = model(x, sigma / 255.0)
            cm = confusion(gt, pr)
            cm_all += cm
            cm_clip[e["clip"]] += cm
            if a.save_pred:
                s = "%s_s%d" % (stem(e), sigma)
                cv2.imwrite(os.path.join(a.save_pred, s + "_pred.png"), pr)
                bgr = np.round(x[:, :, ::-1] * 255).astype(np.uint8)
                cv2.imwrite(os.path.join(a.save_pred, s + "_pred_overlay.png"), overlay(bgr, pr))
            log("sigma %d: frame %d/%d %s (%.1f s elapsed)" % (sigma, i + 1, len(data), stem(e), time.time() - t0))
        r = scores(cm_all)
        r["per_clip"] = {c: scores(cm_clip[c]) for c in clips}
        r["given"] = given(cm_all)
        r["confusion"] = cm_all.tolist()
        res["conditions"]["sigma%d" % sigma] = r
    if a.flicker_n > 1:
        res["flicker"] = {"clip": FLICKER_CLIP}
        for sigma in fsigmas:
            res["flicker"]["sigma%d" % sigma] = flicker(model, a.footage, a.flicker_start, a.flicker_n, sigma, a.seed,
                                                        a.confirm_frames)

    # table
    conds = list(res["conditions"])
    print("model %s on %d real frames (%s)" % (model.name, len(data), ", ".join(clips)))
    print("%-30s" % "" + "".join("%14s" % c for c in conds))
    print("%-30s" % "mIoU (present)" + "".join("%14.3f" % res["conditions"][c]["miou"] for c in conds))
    print("%-30s" % "pixel accuracy" + "".join("%14.3f" % res["conditions"][c]["pixel_accuracy"] for c in conds))
    for clip in clips:
        print("%-30s" % ("  " + clip + " mIoU") + "".join("%14.3f" % res["conditions"][c]["per_clip"][clip]["miou"] for c in conds))
        print("%-30s" % ("  " + clip + " acc") + "".join("%14.3f" % res["conditions"][c]["per_clip"][clip]["pixel_accuracy"] for c in conds))
    if conds:
        print("per-class IoU:")
        for name in res["conditions"][conds[0]]["iou"]:
            print("%-30s" % ("  " + name) + "".join("%14.3f" % res["conditions"][c]["iou"][name] for c in conds))
        for c in conds:
            print("labelled class -> predicted classes (share of its pixels), %s:" % c)
            for name, g in res["conditions"][c]["given"].items():
                print("  %-12s %s" % (name, ", ".join("%s %.2f" % kv for kv in g.items())))
    if "flicker" in res:
        for k, v in res["flicker"].items():
            if k.startswith("sigma"):
                print("flicker %s (%s frames %d..%d): mean %.4f, max %.4f of pixels change class per frame; "
                      "stabilized (class-confirm-frames=%d) mean %.4f, max %.4f" % (
                          k, FLICKER_CLIP, v["start"], v["start"] + v["frames"] - 1, v["mean"], v["max"],
                          v["stabilized"]["confirm_frames"], v["stabilized"]["mean"], v["stabilized"]["max"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
