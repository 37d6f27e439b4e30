#!/usr/bin/env python3
"""Copy the measured numbers of evaluate.py's json into the shipped sidecars' [metrics].

    python models/train/card_metrics.py models/train/runs/eval.json
"""
import json
import os
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export import write_sidecar  # noqa: E402

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHIPPED = {"sdb": "denoiseseg-sdb-small", "quality": "denoiseseg-sdb-quality", "camera": "denoiseseg-sdb-camera"}


def main():
    ev = json.load(open(sys.argv[1]))
    for key, stem in SHIPPED.items():
        path = os.path.join(MODELS, stem + ".toml")
        if not os.path.exists(path):
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
        write_sidecar(path, d["name"], d["description"], d["provenance"], list(d["outputs"].keys()), m,
                      version=d["version"], license_=d["license"])
        print("updated", path, m)


if __name__ == "__main__":
    main()
