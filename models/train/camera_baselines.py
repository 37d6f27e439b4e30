#!/usr/bin/env python3
"""The classical baseline on camera noise as `denoiseseg eval` makes it: OpenCV's
non-local means (fastNlMeansDenoisingColored) given the right filter strength.

For each clip, noise level and codec, the first --frames frames are decoded clean and
degraded exactly as `denoiseseg eval --noise camera --codec ... --seed 0` degrades them
(the project's addnoise element, then x264 or JPEG, with GStreamer), and NLM runs with
each h of a grid on the first --pick frames; the best h (the oracle's "right h") then
runs on all frames. Prints the input PSNR and NLM's, per condition, as a table (and
--json).

    .venv/bin/python models/train/camera_baselines.py --sigmas 12,25 --codecs h264:23,jpeg:50

Needs the built plugin (target/release or GST_PLUGIN_PATH) and gst-launch-1.0.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import psnr  # noqa: E402
from sigma_probe import FOOTAGE, conditions  # noqa: E402

H_GRID = (3, 5, 7, 9, 12, 15, 19, 24, 30)


def nlm(frames, h):
    import cv2
    return [cv2.fastNlMeansDenoisingColored(f, None, h, h, 7, 21) for f in frames]


def mean_psnr(a, b):
    return float(np.mean([psnr(x.astype(np.float32) / 255, y.astype(np.float32) / 255) for x, y in zip(a, b)]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", nargs="+", default=[os.path.join(FOOTAGE, "street-bikes.mp4"),
                                                   os.path.join(FOOTAGE, "street-camera.avi")])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--pick", type=int, default=4, help="frames the h grid is searched on")
    ap.add_argument("--sigmas", default="12,25")
    ap.add_argument("--noise", default="camera", choices=["camera", "gaussian"])
    ap.add_argument("--codecs", default="h264:23,jpeg:50")
    ap.add_argument("--seed", type=int, default=0, help="addnoise seed (denoiseseg eval's --seed)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sigmas = [float(v) for v in args.sigmas.split(",")]
        for name, sigma, codec, c, d in conditions(args.clips, args.frames, args.noise, sigmas,
                                                   args.codecs.split(","), args.seed, tmp):
            n = len(c)
            grid = {hh: mean_psnr(nlm(d[: args.pick], hh), c[: args.pick]) for hh in H_GRID}
            best = max(grid, key=grid.get)
            row = dict(clip=name, noise=args.noise, sigma=sigma, codec=codec, frames=n,
                       psnr_in=mean_psnr(d, c), nlm_h=best, psnr_nlm=mean_psnr(nlm(d, best), c))
            rows.append(row)
            print(f"{name} {args.noise} sigma {sigma:g} {codec}: input {row['psnr_in']:.2f} dB, "
                  f"NLM h={best} {row['psnr_nlm']:.2f} dB ({n} frames)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
