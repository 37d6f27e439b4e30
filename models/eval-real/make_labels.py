#!/usr/bin/env python3
"""Rasterize the coarse hand-drawn polygons of the real-frame evaluation set into label maps.

    python models/eval-real/make_labels.py [--footage ../shared/footage] [--out models/eval-real/out] [--overlays]

Reads models/eval-real/polygons.json, extracts the labelled frames from the clips in the
footage folder with OpenCV (frame index = number of cv2.VideoCapture reads before it,
counting from 0), and writes into --out (git-ignored):

    <clip stem>_<frame:04d>.png         the frame as decoded (BGR PNG, 8 bit)
    <clip stem>_<frame:04d>_labels.png  uint8 Cityscapes train ids, 255 = ignore
    <clip stem>_<frame:04d>_overlay.png with --overlays: label colours over the frame

Polygons are painted in order with cv2.fillPoly, later ones over earlier ones; class
"ignore" paints 255 (used to cut people, poles and clutter out of the background
regions). Every pixel no polygon covers is 255. The frames are for evaluation only:
never train on them.
"""
import argparse
import json
import os
import sys

import cv2
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "models", "train"))
from cityscapes_labels import CLASSES, IGNORE  # noqa: E402

CLASS_ID = {name: cid for cid, name, _ in CLASSES}
CLASS_ID["ignore"] = IGNORE
PALETTE = np.zeros((256, 3), np.uint8)
for cid, _, rgb in CLASSES:
    PALETTE[cid] = rgb


def default_footage():
    return os.path.normpath(os.path.join(REPO, "..", "shared", "footage"))


def load_polygons(path=None):
    with open(path or os.path.join(HERE, "polygons.json")) as f:
        return json.load(f)


def stem(entry):
    return "%s_%04d" % (os.path.splitext(entry["clip"])[0], entry["frame"])


def read_frames(clip_path, indices):
    """{index: BGR uint8 frame} for the wanted indices, reading the clip sequentially."""
    want = set(indices)
    cap = cv2.VideoCapture(clip_path)
    if not cap.isOpened():
        raise SystemExit("cannot open %s (see --footage)" % clip_path)
    out, i = {}, 0
    while want - set(out):
        ok, frame = cap.read()
        if not ok:
            break
        if i in want:
            out[i] = frame
        i += 1
    cap.release()
    missing = want - set(out)
    if missing:
        raise SystemExit("%s: frames %s not found (clip has %d)" % (clip_path, sorted(missing), i))
    return out


def rasterize(entry):
    w, h = entry["size"]
    lab = np.full((h, w), IGNORE, np.uint8)
    for poly in entry["polygons"]:
        name = poly["class"]
        if name not in CLASS_ID:
            raise SystemExit("%s: unknown class %r" % (stem(entry), name))
        pts = np.round(np.asarray(poly["points"], np.float64)).astype(np.int32)
        if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] != 2:
            raise SystemExit("%s: polygon of %s needs >= 3 [x, y] points" % (stem(entry), name))
        cv2.fillPoly(lab, [pts], int(CLASS_ID[name]))
    return lab


def overlay(frame_bgr, lab, alpha=0.55):
    col = PALETTE[lab][:, :, ::-1].astype(np.float32)  # RGB palette -> BGR
    m = (lab != IGNORE)[:, :, None]
    out = np.where(m, frame_bgr * (1 - alpha) + col * alpha, frame_bgr * 0.6)
    out = out.astype(np.uint8)
    # outline every label region so the polygon edges are easy to check
    edges = cv2.morphologyEx(lab, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = (255, 255, 255)
    return out


def load_set(footage=None, polygons=None):
    """[(entry, frame RGB float32 [H,W,3] in [0,1], labels uint8 [H,W])] in the order of polygons.json."""
    footage = footage or default_footage()
    doc = load_polygons(polygons)
    by_clip = {}
    for e in doc["frames"]:
        by_clip.setdefault(e["clip"], []).append(e["frame"])
    frames = {c: read_frames(os.path.join(footage, c), idx) for c, idx in by_clip.items()}
    out = []
    for e in doc["frames"]:
        f = frames[e["clip"]][e["frame"]]
        if [f.shape[1], f.shape[0]] != list(e["size"]):
            raise SystemExit("%s: frame is %dx%d, polygons.json says %s" % (stem(e), f.shape[1], f.shape[0], e["size"]))
        out.append((e, f, rasterize(e)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--footage", default=default_footage(), help="folder with the clips (default: ../shared/footage from the repo root)")
    ap.add_argument("--polygons", default=os.path.join(HERE, "polygons.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--overlays", action="store_true", help="also write <stem>_overlay.png")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    counts = np.zeros(256, np.int64)
    for e, f, lab in load_set(a.footage, a.polygons):
        s = stem(e)
        cv2.imwrite(os.path.join(a.out, s + ".png"), f)
        cv2.imwrite(os.path.join(a.out, s + "_labels.png"), lab)
        if a.overlays:
            cv2.imwrite(os.path.join(a.out, s + "_overlay.png"), overlay(f, lab))
        c = np.bincount(lab.ravel(), minlength=256)
        counts += c
        print("%s: %5.1f %% labelled, classes %s" % (
            s, 100.0 * (1 - c[IGNORE] / lab.size),
            ", ".join("%s %d" % (n, c[i]) for i, n, _ in CLASSES if c[i])))
    print("total labelled pixels per class: " + ", ".join("%s %d" % (n, counts[i]) for i, n, _ in CLASSES if counts[i]))


if __name__ == "__main__":
    main()
