#!/usr/bin/env python3
"""Render the clean sample street clip (models/sample/) from the procedural generator.

One scene is rendered once by ``scenes.render(seed, zoom*width, zoom*height)``; the clip
is a crop window that shrinks geometrically toward the scene's vanishing point, from the
whole render (first frame) to a ``width x height`` window at 1:1 (last frame), so the
camera seems to drive forward down the street. The labels go through the same
per-frame affine map with nearest-neighbour sampling (they stay exact train ids); the
image is low-passed by the downscale factor first and sampled bicubically.
Deterministic: the same arguments give the same frames, bit for bit.

Outputs in --out-dir:
  street.mp4         the clean clip, H.264 (x264, constant quality), yuv420p, in MP4
  street-labels.mkv  the per-frame train-id maps (0..18, 255 = ignore), GRAY8, FFV1 in
                     Matroska (lossless; the script decodes it back and checks it)

Encoding uses gst-launch-1.0 (GStreamer good/ugly/libav plugins). Needs numpy and
opencv-python-headless only.

    python models/train/make_sample_clip.py --out-dir models/sample
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scenes  # noqa: E402
from cityscapes_labels import IGNORE, NUM_CLASSES  # noqa: E402


def render_with_camera(seed, w, h):
    """scenes.render plus the Camera it used (for the vanishing point (xv, yh))."""
    seen = []
    orig = scenes.Camera

    def spy(*a, **k):
        cam = orig(*a, **k)
        seen.append(cam)
        return cam

    scenes.Camera = spy
    try:
        img, lab = scenes.render(seed, w, h)
    finally:
        scenes.Camera = orig
    assert len(seen) == 1
    return img, lab, seen[0]


def frame_maps(n, w, h, zoom, vp):
    """Per frame: (scale d, 2x3 inverse affine dst->src) in pixel-centre coordinates.

    d = source pixels per output pixel, from `zoom` (whole render) down to 1. The
    vanishing point keeps its place in the output frame, so the window stays inside
    the render for every d <= zoom.
    """
    vx, vy = vp
    ox, oy = (vx + 0.5) / zoom - 0.5, (vy + 0.5) / zoom - 0.5  # vp in output pixels
    maps = []
    for i in range(n):
        t = i / max(n - 1, 1)
        d = zoom ** (1.0 - t)
        m = np.array([[d, 0.0, vx - d * ox], [0.0, d, vy - d * oy]], np.float64)
        maps.append((d, m))
    return maps


def run(cmd, log):
    log("  $ " + " ".join(cmd))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout)
        raise SystemExit(f"command failed ({r.returncode}): {cmd[0]}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sample"))
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=2000023,
                    help="scene seed (outside the training 0..2999 and held-out 1000000.. ranges)")
    ap.add_argument("--zoom", type=float, default=2.0,
                    help="render size / output size = total zoom over the clip (>= 1)")
    ap.add_argument("--quality", type=int, default=16, help="x264 constant-quality level (CRF-like)")
    ap.add_argument("--name", default="street")
    ap.add_argument("--keep-frames", default=None, help="also keep the PNG frames in this folder")
    args = ap.parse_args()
    log = lambda s: print(s, flush=True)  # noqa: E731

    W, H, N = args.width, args.height, args.frames
    if W % 8 or H % 8:
        raise SystemExit("--width and --height must be multiples of 8")
    if args.zoom < 1.0:
        raise SystemExit("--zoom must be >= 1")
    RW, RH = int(round(W * args.zoom)), int(round(H * args.zoom))
    zoom = RW / W
    os.makedirs(args.out_dir, exist_ok=True)
    mp4 = os.path.join(args.out_dir, args.name + ".mp4")
    mkv = os.path.join(args.out_dir, args.name + "-labels.mkv")

    t0 = time.time()
    img, lab, cam = render_with_camera(args.seed, RW, RH)
    assert lab.dtype == np.uint8 and ((lab < NUM_CLASSES) | (lab == IGNORE)).all()
    vp = (cam.xv, cam.yh)
    log(f"rendered seed {args.seed} at {RW}x{RH} in {time.time() - t0:.1f}s; vanishing point "
        f"({vp[0]:.1f}, {vp[1]:.1f}); classes present: {np.unique(lab).tolist()}")
    img8 = np.round(np.clip(img, 0, 1) * 255.0).astype(np.float32)  # 8-bit levels, float for filtering

    tmp = tempfile.mkdtemp(prefix="sampleclip-")
    fdir, ldir, ddir = (os.path.join(tmp, s) for s in ("rgb", "lab", "dec"))
    for d in (fdir, ldir, ddir):
        os.makedirs(d)
    labels = np.empty((N, H, W), np.uint8)
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    for i, (d, m) in enumerate(frame_maps(N, W, H, zoom, vp)):
        # anti-alias: Gaussian low-pass matched to the downscale factor d
        sigma = 0.5 * np.sqrt(max(d * d - 1.0, 0.0))
        src = cv2.GaussianBlur(img8, (0, 0), sigma) if sigma > 0.05 else img8
        fr = cv2.warpAffine(src, m, (W, H), flags=flags, borderMode=cv2.BORDER_REFLECT)
        fr = np.clip(np.round(fr), 0, 255).astype(np.uint8)
        lb = cv2.warpAffine(lab, m, (W, H), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE)
        labels[i] = lb
        cv2.imwrite(os.path.join(fdir, f"{i:04d}.png"), fr[..., ::-1])
        cv2.imwrite(os.path.join(ldir, f"{i:04d}.png"), lb)
        if i % 20 == 0 or i == N - 1:
            log(f"frame {i + 1}/{N}: scale {d:.3f} src px/px")
    ign = int((labels == IGNORE).sum())
    log(f"labels: {ign} ignore pixels; per-class share (%): " + " ".join(
        f"{c}:{100.0 * (labels == c).mean():.1f}" for c in range(NUM_CLASSES) if (labels == c).any()))

    gst = shutil.which("gst-launch-1.0") or "gst-launch-1.0"
    caps = f"caps=image/png,framerate={args.fps}/1"
    log("encoding " + mp4)
    run([gst, "-q", "multifilesrc", f"location={fdir}/%04d.png", "index=0", caps, "!", "pngdec", "!",
         "videoconvert", "!", "video/x-raw,format=I420,colorimetry=bt601", "!",
         "x264enc", "pass=qual", f"quantizer={args.quality}", "speed-preset=veryslow", "psy-tune=grain",
         f"key-int-max={2 * args.fps}", "bframes=2", "threads=2", "!", "video/x-h264,profile=high", "!",
         "h264parse", "!", "mp4mux", "faststart=true", "!", "filesink", f"location={mp4}"], log)
    log("encoding " + mkv)
    run([gst, "-q", "multifilesrc", f"location={ldir}/%04d.png", "index=0", caps, "!", "pngdec", "!",
         "videoconvert", "!", "video/x-raw,format=GRAY8", "!", "avenc_ffv1", "!", "matroskamux", "!",
         "filesink", f"location={mkv}"], log)

    # check: labels decode back bit exact, the clip decodes to N frames of WxH
    run([gst, "-q", "filesrc", f"location={mkv}", "!", "matroskademux", "!", "avdec_ffv1", "!", "videoconvert",
         "!", "video/x-raw,format=GRAY8", "!", "multifilesink", f"location={ddir}/l%04d.gray"], log)
    dec = sorted(f for f in os.listdir(ddir) if f.startswith("l"))
    got = np.stack([np.fromfile(os.path.join(ddir, f), np.uint8).reshape(H, W) for f in dec]) if dec else None
    if got is None or got.shape != labels.shape or not np.array_equal(got, labels):
        raise SystemExit(f"label round trip FAILED: {0 if got is None else got.shape} vs {labels.shape}")
    log(f"labels round trip: {len(dec)} frames, bit exact")
    run([gst, "-q", "filesrc", f"location={mp4}", "!", "qtdemux", "!", "avdec_h264", "!", "videoconvert", "!",
         "video/x-raw,format=RGB", "!", "multifilesink", f"location={ddir}/v%04d.rgb"], log)
    dec = sorted(f for f in os.listdir(ddir) if f.startswith("v"))
    if len(dec) != N:
        raise SystemExit(f"mp4 decodes to {len(dec)} frames, expected {N}")
    psnr = []
    for i, f in enumerate(dec):
        a = np.fromfile(os.path.join(ddir, f), np.uint8).reshape(H, W, 3).astype(np.float64)
        b = cv2.imread(os.path.join(fdir, f"{i:04d}.png"))[..., ::-1].astype(np.float64)
        psnr.append(10 * np.log10(255.0 ** 2 / max(((a - b) ** 2).mean(), 1e-10)))
    log(f"mp4: {len(dec)} frames {W}x{H}; PSNR vs rendered RGB (incl. 4:2:0) "
        f"min {min(psnr):.2f} mean {np.mean(psnr):.2f} dB")
    if args.keep_frames:
        shutil.rmtree(args.keep_frames, ignore_errors=True)
        shutil.copytree(fdir, os.path.join(args.keep_frames, "rgb"))
        shutil.copytree(ldir, os.path.join(args.keep_frames, "labels"))
    shutil.rmtree(tmp)
    for p in (mp4, mkv):
        log(f"{p}: {os.path.getsize(p) / 1024:.0f} KiB")
    log(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
