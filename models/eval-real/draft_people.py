#!/usr/bin/env python3
"""Draft the people polygons of a street-camera.avi frame (the labelling aid used for polygons.json).

    python models/eval-real/draft_people.py 40 200 360 [--footage ../shared/footage]

The camera is static, so a person is what differs from the clip's median frame (every
5th frame). For each connected blob of |frame - median| > 40 (any channel, closed 5x5):
an "ignore" box (the blob's box grown by --margin pixels, more upwards for heads the
difference misses) and, for blobs at least --min-height tall, a "person" polygon: the
blob eroded by 2 pixels, its outer contour simplified (approxPolyDP, 1.5 px). Prints
the JSON polygon entries per frame. The drafts were then checked by eye on overlays
(make_labels.py --overlays) and edited by hand where the difference missed or
over-reached; polygons.json, not this script, is the label source.
"""
import argparse
import json
import os

import cv2
import numpy as np

from make_labels import default_footage


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("frames", type=int, nargs="+")
    ap.add_argument("--footage", default=default_footage())
    ap.add_argument("--clip", default="street-camera.avi")
    ap.add_argument("--threshold", type=int, default=40)
    ap.add_argument("--min-height", type=int, default=40)
    ap.add_argument("--min-area", type=int, default=40)
    ap.add_argument("--margin", type=int, default=6)
    a = ap.parse_args()
    cap = cv2.VideoCapture(os.path.join(a.footage, a.clip))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    med = np.median(np.stack(frames[::5]), axis=0).astype(np.int16)
    out = {}
    for i in a.frames:
        d = np.abs(frames[i].astype(np.int16) - med).max(axis=2)
        m = cv2.morphologyEx((d > a.threshold).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m)
        ignores, people = [], []
        H, W = m.shape
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area < a.min_area:
                continue
            g = a.margin
            x0, y0, x1, y1 = max(0, x - g), max(0, y - 2 * g), min(W - 1, x + w + g), min(H - 1, y + h + g)
            ignores.append({"class": "ignore", "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
            if h < a.min_height:
                continue
            blob = cv2.erode((lab == k).astype(np.uint8), np.ones((5, 5), np.uint8))
            cs, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            for c in cs:
                if cv2.contourArea(c) < 30:
                    continue
                p = cv2.approxPolyDP(c, 1.5, True)[:, 0, :]
                people.append({"class": "person", "points": p.tolist()})
        out[i] = ignores + people
    print(json.dumps(out))


if __name__ == "__main__":
    main()
