#!/usr/bin/env python3
"""A checkpoint whose final segmenter comes from another SDB checkpoint of the same
architecture: the rest (the first segmenter and the denoiser) is kept, so the denoised
output does not change. Used to give the camera model the default's segmenter trained
for real streets (issue 19): both share the default's architecture, and the final
segmenter reads a denoised frame either way.

    .venv/bin/python models/train/swap_seg.py --into models/train/runs/sdb-camera/last.pt \\
        --seg-from models/train/runs/sdb-real-mix/last.pt --out models/train/runs/sdb-camera-seg/last.pt
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--into", required=True, help="SDB checkpoint that keeps its denoiser and first segmenter")
    ap.add_argument("--seg-from", required=True, help="SDB checkpoint whose final segmenter is taken")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    into, seg = torch.load(args.into, map_location="cpu"), torch.load(args.seg_from, map_location="cpu")
    for ck, name in ((into, args.into), (seg, args.seg_from)):
        if ck.get("args", {}).get("model") != "sdb":
            raise SystemExit(f"{name}: not an SDB checkpoint")
    prefix, mine = nets.final_seg_state(into["model"])
    taken = {k: v for k, v in seg["model"].items() if k.startswith(prefix)}
    if set(taken) != {prefix + k for k in mine} or any(taken[prefix + k].shape != v.shape for k, v in mine.items()):
        raise SystemExit(f"{args.seg_from}: its final segmenter ({prefix[:-1]}) does not fit {args.into}'s")
    model = dict(into["model"])
    model.update(taken)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({"model": model, "step": into["step"], "args": into["args"]}, args.out)
    print(f"{args.out}: {args.into} with the final segmenter ({prefix[:-1]}, {len(taken)} tensors) of {args.seg_from}")


if __name__ == "__main__":
    main()
