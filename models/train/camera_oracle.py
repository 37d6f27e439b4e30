#!/usr/bin/env python3
"""The best noise level to give a model on camera noise as `denoiseseg eval` makes it:
the first --frames frames of each clip are degraded exactly as `denoiseseg eval --noise
camera --codec ... --seed 0` degrades them (addnoise, then x264 or JPEG, with
GStreamer), and each model runs with each fed sigma of a grid; prints the input PSNR
and, per model, the PSNR at each fed sigma and the best one. Compare with
`denoiseseg eval ... --estimate` (the element's own estimate, noise-level=-1) on the same
frames: the issue's target is the estimate within 0.5 dB of the best sigma given.

    .venv/bin/python models/train/camera_oracle.py --models models/denoiseseg-sdb-small.onnx \\
        --sigmas 12,25 --codecs h264:23,jpeg:50

Needs the built plugin (target/release or GST_PLUGIN_PATH) and gst-launch-1.0.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import Onnx, psnr  # noqa: E402
from sigma_probe import FOOTAGE, conditions  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--clips", nargs="+", default=[os.path.join(FOOTAGE, "street-bikes.mp4"),
                                                   os.path.join(FOOTAGE, "street-camera.avi")])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--sigmas", default="12,25")
    ap.add_argument("--fed", default="0.25,0.5,0.75,1,1.25,1.5,2",
                    help="fed sigmas, as multiples of the noise's nominal sigma")
    ap.add_argument("--noise", default="camera", choices=["camera", "gaussian"])
    ap.add_argument("--codecs", default="h264:23,jpeg:50")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    models = {os.path.basename(m): Onnx(m) for m in args.models}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sigmas = [float(v) for v in args.sigmas.split(",")]
        for name, sigma, codec, clean, noisy in conditions(args.clips, args.frames, args.noise, sigmas,
                                                           args.codecs.split(","), args.seed, tmp):
            clean, noisy = clean.astype(np.float32) / 255, noisy.astype(np.float32) / 255
            n = len(clean)
            row = dict(clip=name, noise=args.noise, sigma=sigma, codec=codec, frames=n,
                       psnr_in=float(np.mean([psnr(noisy[i], clean[i]) for i in range(n)])), models={})
            for mname, model in models.items():
                curve = {}
                for k in (float(v) for v in args.fed.split(",")):
                    fed = k * sigma
                    curve[fed] = float(np.mean([psnr(model(noisy[i], fed / 255)["denoised"], clean[i])
                                                for i in range(n)]))
                best = max(curve, key=curve.get)
                row["models"][mname] = dict(curve=curve, best_fed=best, best=curve[best])
                print(f"{name} {args.noise} sigma {sigma:g} {codec}: input {row['psnr_in']:.2f}; {mname}: "
                      + " ".join(f"{f:g}:{p:.2f}" for f, p in curve.items())
                      + f" -> best fed {best:g} {curve[best]:.2f} dB", flush=True)
            rows.append(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
