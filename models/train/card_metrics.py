#!/usr/bin/env python3
"""Copy the measured numbers of evaluate.py's json into the shipped sidecars' [metrics].

    python models/train/card_metrics.py models/train/runs/eval.json [--only sdb,camera]
        [--real sdb=models/eval-real/out/small.json ...]

--only updates those models' sidecars and leaves the others as they are; --real adds
the real-street figures of models/eval-real/evaluate_real.py (mIoU, pixel accuracy and
flicker, clean and at sigma 25) to that model's metrics.
"""
import argparse
import json
import os
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import write_sidecar  # noqa: E402

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHIPPED = {"sdb": "denoiseseg-sdb-small", "quality": "denoiseseg-sdb-quality", "camera": "denoiseseg-sdb-camera"}


def real_street_metrics(path):
    """evaluate_real.py's json -> real_streets_* metrics."""
    r = json.load(open(path))
    m = {"real_streets_frames": len(r["frames"])}
    for cond, c in r["conditions"].items():
        m[f"real_streets_miou_{cond}"] = c["miou"]
        m[f"real_streets_pixel_accuracy_{cond}"] = c["pixel_accuracy"]
    for cond, f in r.get("flicker", {}).items():
        if isinstance(f, dict):
            m[f"real_streets_flicker_{cond}"] = f["mean"]
            if "stabilized" in f:
                # what the element shows with its default class-confirm-frames
                m[f"real_streets_flicker_stabilized_{cond}"] = f["stabilized"]["mean"]
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_json")
    ap.add_argument("--only", default=None, help="comma-separated model keys (sdb, quality, camera)")
    ap.add_argument("--real", action="append", default=[], help="KEY=evaluate_real.py json")
    args = ap.parse_args()
    ev = json.load(open(args.eval_json))
    only = set(args.only.split(",")) if args.only else set(SHIPPED)
    real_streets = dict(spec.split("=", 1) for spec in args.real)
    for key, stem in SHIPPED.items():
        path = os.path.join(MODELS, stem + ".toml")
        if key not in only or not os.path.exists(path):
            continue
        d = tomllib.load(open(path, "rb"))
        m = {"gmac_1024x512": d.get("metrics", {}).get("gmac_1024x512", 0.0),
             "eval_synthetic_images": ev["held_out"]["n"], "eval_synthetic_seed0": ev["held_out"]["seed0"],
             "eval_real_images": len(ev.get("real_images", {})) or 3}
        syn, real = ev["synthetic"], ev["real"]
        if f"miou_{key}_on_clean" in syn:
            m["miou_clean"] = syn[f"miou_{key}_on_clean"]
        for sg in (15, 25, 50):
            s, r = syn.get(f"sigma{sg}", {}), real.get(f"sigma{sg}", {})
            for src, dst in ((f"psnr_{key}", f"psnr_sigma{sg}"), (f"ssim_{key}", f"ssim_sigma{sg}"),
                             (f"miou_{key}", f"miou_sigma{sg}"), (f"psnr_{key}_est_sigma", f"psnr_sigma{sg}_estimated"),
                             (f"miou_{key}_est_sigma", f"miou_sigma{sg}_estimated")):
                if src in s:
                    m[dst] = s[src]
            for src, dst in ((f"psnr_{key}", f"psnr_real_sigma{sg}"), (f"ssim_{key}", f"ssim_real_sigma{sg}"),
                             (f"psnr_{key}_est_sigma", f"psnr_real_sigma{sg}_estimated")):
                if src in r:
                    m[dst] = r[src]
        if key in real_streets:
            m.update(real_street_metrics(real_streets[key]))
        write_sidecar(path, d["name"], d["description"], d["provenance"], list(d["outputs"].keys()), m,
                      version=d["version"], license_=d["license"])
        print("updated", path, m)


if __name__ == "__main__":
    main()
