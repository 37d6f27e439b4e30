#!/usr/bin/env python3
"""What noise level should a sigma-conditioned denoiser be fed on real camera video?

For clean clips (by default the two street clips in ../shared/footage), this adds noise
with the project's own `addnoise` element (white Gaussian, or camera noise: shot plus
read noise, sigma at mid-grey, as `denoiseseg eval --noise camera` makes it), optionally
compresses it (x264 at a CRF, or JPEG at a quality) with GStreamer, and then, on crops
of a few frames of each condition:

- runs the ONNX model at a grid of fed sigmas and records the PSNR against the clean
  crop (the oracle: which fed sigma is best, and how much each costs);
- records noise-level features of the degraded crop: the element's estimator (a port
  of one scale of src/noise.rs, measure.estimate_sigma_element_fine) on the crop and
  on its 2x2 and 4x4 box-averaged versions, with the Sobel threshold of the pixels it
  used over the estimate (about 5.2 for white noise).

One JSON line per crop goes to --out. Needs the built plugin (GST_PLUGIN_PATH or
target/release) and gst-launch-1.0.

    .venv/bin/python models/train/sigma_probe.py --out models/train/runs/sigma_probe.jsonl
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import Onnx, estimate_sigma_element_fine, psnr  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FOOTAGE = os.path.join(ROOT, "..", "shared", "footage")
FED = (0, 4, 8, 12, 16, 20, 25, 30, 36, 44, 54)


def addnoise_props(noise, sigma):
    """As `denoiseseg eval` (src/bin/denoiseseg/eval.rs, NoiseModel::addnoise_props)."""
    if noise == "gaussian":
        return [f"sigma={sigma}"]
    return ["mode=poisson-gaussian", f"sigma={sigma / 2}", f"gain={0.75 * sigma * sigma / 128}"]


def codec_chain(codec):
    if codec == "none":
        return []
    kind, q = codec.split(":")
    if kind == "h264":
        return ["!", "videoconvert", "!", "video/x-raw,format=I420", "!", "x264enc", "pass=qual",
                f"quantizer={q}", "speed-preset=faster",
                # as denoiseseg eval: one thread (the stream depends on the thread count) and no
                # mb-tree (it encoded the same frames differently from run to run)
                "threads=1", "mb-tree=false", "!", "h264parse", "!", "avdec_h264"]
    return ["!", "jpegenc", f"quality={q}", "!", "jpegdec"]


def is_image(clip):
    return clip.lower().endswith((".png", ".jpg", ".jpeg"))


def source(clip, n):
    """gst-launch elements that decode `clip`: a video, or a still image (PNG/JPEG) shown
    for n + 1 frames at 10 frames/s. A video's frames are not limited here: frames_of
    feeds the encoder its first n frames exactly."""
    if is_image(clip):
        return ["filesrc", f"location={clip}", "!", "decodebin", "!", "videoconvert", "!", "videoscale", "!",
                "video/x-raw,format=RGB,width=512,height=384", "!", "imagefreeze", f"num-buffers={n + 1}", "!",
                "video/x-raw,framerate=10/1"]
    return ["filesrc", f"location={clip}", "!", "decodebin", "!", "videoconvert", "!", "video/x-raw,format=RGB"]


def exact_source(clip, n, tmp):
    """gst-launch elements that give exactly the first n decoded frames of a video, as
    `denoiseseg eval --frames n` feeds addnoise and the encoder: the clip is decoded to
    raw RGB once, cut at n frames and fed back in whole frames. (identity eos-after let
    a varying number of frames through, and x264's lookahead then encoded even the
    first frames differently from run to run.)"""
    w, h, rate = caps_of(clip)
    frame = (w * 3 + 3) // 4 * 4 * h
    raw = os.path.join(tmp, "clean.rgb")
    subprocess.run(["gst-launch-1.0", "-q", *source(clip, n), "!", "filesink", f"location={raw}"],
                   check=True, capture_output=True)
    with open(raw, "r+b") as f:
        f.truncate(min(os.path.getsize(raw) // frame, n) * frame)
    return ["filesrc", f"location={raw}", f"blocksize={frame}", "!", "rawvideoparse", "format=rgb", f"width={w}",
            f"height={h}", f"framerate={rate}"]


def frames_of(clip, n, extra, tmp):
    """The first n frames of clip through `extra` elements, as uint8 [n, h, w, 3]."""
    raw = os.path.join(tmp, "frames.rgb")
    src = source(clip, n) if is_image(clip) else exact_source(clip, n, tmp)
    cmd = ["gst-launch-1.0", "-q", *src, *extra, "!", "videoconvert", "!",
           "video/x-raw,format=RGB", "!", "identity", "name=probe", "!", "filesink", f"location={raw}"]
    subprocess.run(cmd, check=True, capture_output=True)
    data = np.fromfile(raw, np.uint8)
    os.remove(raw)
    return data


def clip_frames(clip, n, extra, tmp):
    """The first n frames of clip through `extra` elements, as uint8 [n, h, w, 3]
    (frames_of's rows without their padding)."""
    w, h = size_of(clip)
    stride = (w * 3 + 3) // 4 * 4
    return frames_of(clip, n, extra, tmp).reshape(-1, h, stride)[:, :, : w * 3].reshape(-1, h, w, 3)[:n]


def caps_of(clip):
    """(width, height, framerate) of a clip's decoded frames, from the caps gst-launch -v prints."""
    out = subprocess.run(["gst-launch-1.0", "-v", *source(clip, 1), "!", "fakesink", "num-buffers=1"],
                         check=True, capture_output=True, text=True).stdout
    # the last caps printed are those the sink got
    caps = [line for line in out.splitlines() if "video/x-raw" in line and "width=" in line][-1]
    w, h = (int(re.search(rf"{k}=\(int\)(\d+)", caps).group(1)) for k in ("width", "height"))
    rate = re.search(r"framerate=\(fraction\)(\d+/\d+)", caps)
    return w, h, rate.group(1) if rate else "25/1"


def conditions(clips, n, noise, sigmas, codecs, seed, tmp):
    """For each clip and each sigma and codec: (clip name, sigma, codec, clean, degraded),
    the first n frames as uint8 [n, h, w, 3], degraded exactly as `denoiseseg eval
    --noise NOISE --codec ... --seed SEED` degrades them."""
    for clip in clips:
        clean = clip_frames(clip, n, [], tmp)
        for sigma in sigmas:
            for codec in codecs:
                extra = ["!", "addnoise", *addnoise_props(noise, sigma), f"seed={seed}", *codec_chain(codec)]
                noisy = clip_frames(clip, n, extra, tmp)
                m = min(len(clean), len(noisy))
                yield os.path.basename(clip), sigma, codec, clean[:m], noisy[:m]


def size_of(clip):
    """(width, height) of a clip's decoded frames."""
    return caps_of(clip)[:2]


def residual_features(img):
    """Immerkaer residuals of an RGB [0,1] image (channels pooled), in sigma units of
    white noise (|r| / (6 * 0.6745), whose median is sigma for white noise): their
    quartiles over all pixels, their median in each quarter of the pixels ranked by
    Sobel gradient, and the share of residuals under 0.25/255 (flat blocks a codec
    wiped)."""
    import cv2
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r, g = [], []
    for c in range(3):
        x = img[..., c]
        r.append(np.abs(cv2.filter2D(x, -1, k)[1:-1, 1:-1]).ravel() / (6 * 0.67448975))
        gx = cv2.Sobel(x, cv2.CV_32F, 1, 0)[1:-1, 1:-1]
        gy = cv2.Sobel(x, cv2.CV_32F, 0, 1)[1:-1, 1:-1]
        g.append((np.abs(gx) + np.abs(gy)).ravel())
    r, g = np.concatenate(r) * 255, np.concatenate(g)
    q = np.quantile(g, [0.25, 0.5, 0.75])
    band = np.digitize(g, q)
    return {
        "q25": float(np.quantile(r, 0.25)), "q50": float(np.median(r)), "q75": float(np.quantile(r, 0.75)),
        **{f"band{b}": float(np.median(r[band == b])) if (band == b).any() else 0.0 for b in range(4)},
        "flat": float(np.mean(r < 0.25 / (6 * 0.67448975))),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "denoiseseg-sdb-small.onnx"))
    ap.add_argument("--clips", nargs="+", default=[os.path.join(FOOTAGE, "street-camera.avi"),
                                                   os.path.join(FOOTAGE, "street-bikes.mp4")])
    ap.add_argument("--frames", type=int, default=60, help="frames decoded per clip")
    ap.add_argument("--take", type=int, default=3, help="frames probed per clip and condition")
    ap.add_argument("--crop", default="384x256")
    ap.add_argument("--sigmas", default="5,10,15,25,40")
    ap.add_argument("--noises", default="gaussian,camera")
    ap.add_argument("--codecs", default="none,h264:18,h264:23,h264:28,jpeg:50,jpeg:75,jpeg:90")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cw, ch = (int(v) for v in args.crop.split("x"))
    model = Onnx(args.model)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as f:
            for line in f:
                r = json.loads(line)
                done.add((r["clip"], r["noise"], r["sigma"], r["codec"], r["frame"]))
    out = open(args.out, "a")
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clips:
            name = os.path.basename(clip)
            clean = frames_of(clip, args.frames, [], tmp)
            w, h = size_of(clip)
            stride = (w * 3 + 3) // 4 * 4
            clean = clean.reshape(-1, h, stride)[:, :, : w * 3].reshape(-1, h, w, 3)
            n = min(clean.shape[0], args.frames - 1)
            picks = np.linspace(0, n - 1, args.take).round().astype(int)
            for noise in args.noises.split(","):
                for sigma in (float(s) for s in args.sigmas.split(",")):
                    for codec in args.codecs.split(","):
                        if all((name, noise, sigma, codec, int(i)) in done for i in picks):
                            continue
                        extra = ["!", "addnoise", *addnoise_props(noise, sigma), "seed=7", *codec_chain(codec)]
                        deg = frames_of(clip, args.frames, extra, tmp)
                        deg = deg.reshape(-1, h, stride)[:, :, : w * 3].reshape(-1, h, w, 3)
                        assert deg.shape[0] > picks[-1], (deg.shape, clean.shape)
                        for k, i in enumerate(picks):
                            # a crop that moves across the frame from pick to pick
                            x0 = (w - cw) * k // max(1, args.take - 1)
                            y0 = (h - ch) // 2 if k % 2 == 0 else h - ch
                            c = clean[i, y0:y0 + ch, x0:x0 + cw].astype(np.float32) / 255
                            d = deg[i, y0:y0 + ch, x0:x0 + cw].astype(np.float32) / 255
                            feats = {}
                            for s in (1, 2, 4):
                                ds = d.reshape(ch // s, s, cw // s, s, 3).mean(axis=(1, 3))
                                est, thr = estimate_sigma_element_fine(ds, with_threshold=True)
                                feats[f"est{s}"] = 255 * est
                                # median Sobel |Gx|+|Gy| of the kept pixels over sigma: ~5.2 for white noise
                                feats[f"gratio{s}"] = thr / est if est > 0 else 0.0
                                for keep in (0.25, 0.125):
                                    feats[f"est{s}k{int(1 / keep)}"] = 255 * estimate_sigma_element_fine(ds, keep=keep)
                                feats.update({f"{k}_{s}": v for k, v in residual_features(ds).items()})
                            curve = [psnr(model(d, f / 255)["denoised"], c) for f in FED]
                            rec = dict(clip=name, noise=noise, sigma=sigma, codec=codec, frame=int(i),
                                       psnr_in=psnr(d, c), fed=list(FED), psnr=curve, **feats)
                            out.write(json.dumps(rec) + "\n")
                            out.flush()
                        best = max(range(len(FED)), key=lambda j: curve[j])
                        print(f"{name} {noise} {sigma:g} {codec}: in {rec['psnr_in']:.2f} best fed {FED[best]} "
                              f"{curve[best]:.2f} est {feats['est1']:.1f}/{feats['est2']:.1f}/{feats['est4']:.1f}",
                              flush=True)


if __name__ == "__main__":
    main()
