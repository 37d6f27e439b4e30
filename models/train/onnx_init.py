#!/usr/bin/env python3
"""A training checkpoint (weights only, for train.py --init) from a shipped SDB model's
ONNX file: the exporter keeps every parameter as an initializer named `net.<key>`, so
the state dict is read back from the graph and checked by running both on one input.

    .venv/bin/python models/train/onnx_init.py models/denoiseseg-sdb-small.onnx \\
        --out models/train/runs/init/sdb-small.pt

The architecture arguments are those of the shipped default (models/README.md): --blocks
1 --width 32 --arch unet --seg-width 64.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402
from measure import Onnx  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--blocks", type=int, default=1)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--seg-width", type=int, default=64)
    ap.add_argument("--arch", default="unet", choices=["shallow", "unet"])
    args = ap.parse_args()

    net = nets.SDB(args.blocks, args.width, args.depth, args.seg_width, args.arch)
    graph = onnx.load(args.model).graph
    weights = {i.name[len("net."):]: torch.from_numpy(numpy_helper.to_array(i).copy())
               for i in graph.initializer if i.name.startswith("net.")}
    missing = net.load_state_dict(weights, strict=True)
    print(f"{len(weights)} tensors read from {args.model} ({missing})")

    # Parity: the checkpoint's network against the ONNX file on one input.
    rng = np.random.default_rng(0)
    x = rng.random((1, 3, 64, 128), dtype=np.float32)
    sigma = np.full((1, 1, 1, 1), 25 / 255, np.float32)
    with torch.no_grad():
        ims, _ = net.eval()(torch.from_numpy(x), torch.from_numpy(sigma))
    ours = torch.clamp(ims[-1], 0, 1).numpy()
    theirs = Onnx(args.model)(x[0].transpose(1, 2, 0), 25 / 255)["denoised"].transpose(2, 0, 1)[None]
    err = float(np.abs(ours - theirs).max())
    print(f"parity: largest difference of the denoised output {err:.2e}")
    if err > 2e-3:
        raise SystemExit("the architecture arguments do not match the ONNX file")
    step = 0
    a = dict(model="sdb", blocks=args.blocks, width=args.width, depth=args.depth, seg_width=args.seg_width,
             arch=args.arch)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({"model": net.state_dict(), "step": step, "args": a}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
