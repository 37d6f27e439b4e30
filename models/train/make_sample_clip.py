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

Encoding uses gst-launch-1.0 (GStreamer base/good/ugly/libav plugins). Needs numpy and
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

LUMA = np.array([0.299, 0.587, 0.114])  # BT.601 luma weights


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


def frame_maps(n, zoom, vp):
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


def rgb_to_i420(rgb):
    """8-bit RGB HxWx3 -> I420 bytes: BT.601 matrix, limited range, chroma = mean of
    each 2x2 block (the convention of the app's own converter), rounded. Done here
    because GStreamer 1.22's videoconvert is off by 2-4 levels on this round trip."""
    f = rgb.astype(np.float64)
    y = f @ LUMA
    cb = (f[..., 2] - y) / 1.772
    cr = (f[..., 0] - y) / 1.402
    h, w = y.shape
    pool = lambda p: p.reshape(h // 2, 2, w // 2, 2).mean((1, 3))  # noqa: E731
    q = lambda p: np.clip(np.round(p), 0, 255).astype(np.uint8).ravel()  # noqa: E731
    return np.concatenate([q(16 + 219 / 255 * y), q(128 + 224 / 255 * pool(cb)), q(128 + 224 / 255 * pool(cr))])


def i420_to_rgb(buf, h, w):
    """Inverse of rgb_to_i420 (chroma shared by its 2x2 block); float RGB 0..255."""
    n = h * w
    up = lambda p: p.reshape(h // 2, w // 2).astype(np.float64).repeat(2, 0).repeat(2, 1)  # noqa: E731
    y = (buf[:n].reshape(h, w).astype(np.float64) - 16) * (255 / 219)
    pb = (up(buf[n:n * 5 // 4]) - 128) * (255 / 224 * 1.772)
    pr = (up(buf[n * 5 // 4:n * 3 // 2]) - 128) * (255 / 224 * 1.402)
    r, b = y + pr, y + pb
    g = (y - LUMA[0] * r - LUMA[2] * b) / LUMA[1]
    return np.clip(np.stack([r, g, b], -1), 0, 255)


def run(cmd, log):
    log("  $ " + " ".join(cmd))
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout)
        raise SystemExit(f"command failed ({r.returncode}): {cmd[0]}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sample")))
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=2000001,
                    help="scene seed (outside the training 0..2999 and held-out 1000000.. ranges)")
    ap.add_argument("--zoom", type=float, default=2.0,
                    help="render size / output size = total zoom over the clip (>= 1)")
    ap.add_argument("--quality", type=int, default=14, help="x264 constant-quality level (CRF-like)")
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
    raw_yuv, raw_lab = os.path.join(tmp, "frames.i420"), os.path.join(tmp, "labels.gray8")
    rgb = np.empty((N, H, W, 3), np.uint8)
    labels = np.empty((N, H, W), np.uint8)
    with open(raw_yuv, "wb") as fy:
        for i, (d, m) in enumerate(frame_maps(N, zoom, vp)):
            # anti-alias: Gaussian low-pass matched to the downscale factor d, then bicubic
            sigma = 0.5 * np.sqrt(max(d * d - 1.0, 0.0))
            src = cv2.GaussianBlur(img8, (0, 0), sigma) if sigma > 0.05 else img8
            fr = cv2.warpAffine(src, m, (W, H), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT)
            rgb[i] = np.clip(np.round(fr), 0, 255).astype(np.uint8)
            labels[i] = cv2.warpAffine(lab, m, (W, H), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE)
            fy.write(rgb_to_i420(rgb[i]).tobytes())
            if i % 20 == 0 or i == N - 1:
                log(f"frame {i + 1}/{N}: scale {d:.3f} render px per output px")
    labels.tofile(raw_lab)
    ign = int((labels == IGNORE).sum())
    log(f"labels: {ign} ignore pixels; per-class share (%): " + " ".join(
        f"{c}:{100.0 * (labels == c).mean():.1f}" for c in range(NUM_CLASSES) if (labels == c).any()))

    gst = shutil.which("gst-launch-1.0") or "gst-launch-1.0"
    parse = ["rawvideoparse", f"width={W}", f"height={H}", f"framerate={args.fps}/1"]
    log("encoding " + mp4)
    run([gst, "-q", "filesrc", f"location={raw_yuv}", "!", *parse, "format=i420", "colorimetry=bt601", "!",
         "x264enc", "pass=qual", f"quantizer={args.quality}", "speed-preset=veryslow", "psy-tune=grain",
         f"key-int-max={2 * args.fps}", "bframes=2", "threads=2", "!", "video/x-h264,profile=high", "!",
         "h264parse", "!", "mp4mux", "faststart=true", "!", "filesink", f"location={mp4}"], log)
    log("encoding " + mkv)
    run([gst, "-q", "filesrc", f"location={raw_lab}", "!", *parse, "format=gray8", "!",
         "avenc_ffv1", "!", "matroskamux", "!", "filesink", f"location={mkv}"], log)

    # check: the labels decode back bit exact; the clip decodes to N frames of WxH I420
    dec_lab, dec_yuv = os.path.join(tmp, "dec.gray8"), os.path.join(tmp, "dec.i420")
    run([gst, "-q", "filesrc", f"location={mkv}", "!", "matroskademux", "!", "avdec_ffv1", "!",
         f"video/x-raw,format=GRAY8,width={W},height={H}", "!", "filesink", f"location={dec_lab}"], log)
    got = np.fromfile(dec_lab, np.uint8)
    if got.size != labels.size or not np.array_equal(got.reshape(labels.shape), labels):
        raise SystemExit(f"label round trip FAILED ({got.size} bytes decoded, {labels.size} expected)")
    log(f"labels round trip: {N} frames {W}x{H} GRAY8, bit exact")
    run([gst, "-q", "filesrc", f"location={mp4}", "!", "qtdemux", "!", "avdec_h264", "!",
         f"video/x-raw,format=I420,width={W},height={H}", "!", "filesink", f"location={dec_yuv}"], log)
    fsz = W * H * 3 // 2
    got = np.fromfile(dec_yuv, np.uint8)
    if got.size != N * fsz:
        raise SystemExit(f"mp4 decodes to {got.size / fsz:g} frames, expected {N}")
    psnr = []
    for i in range(N):
        a = i420_to_rgb(got[i * fsz:(i + 1) * fsz], H, W)
        b = rgb[i].astype(np.float64)
        psnr.append([10 * np.log10(255.0 ** 2 / max(((x - y) ** 2).mean(), 1e-10))
                     for x, y in ((a, b), (a @ LUMA, b @ LUMA))])
    psnr = np.array(psnr)
    log(f"mp4: {N} frames {W}x{H}; PSNR of the decoded clip vs the rendered frames: RGB (incl. 4:2:0) "
        f"min {psnr[:, 0].min():.2f} mean {psnr[:, 0].mean():.2f} dB, luma min {psnr[:, 1].min():.2f} "
        f"mean {psnr[:, 1].mean():.2f} dB")
    if args.keep_frames:
        for sub in ("rgb", "labels"):
            os.makedirs(os.path.join(args.keep_frames, sub), exist_ok=True)
        for i in range(N):
            cv2.imwrite(os.path.join(args.keep_frames, "rgb", f"{i:04d}.png"), rgb[i][..., ::-1])
            cv2.imwrite(os.path.join(args.keep_frames, "labels", f"{i:04d}.png"), labels[i])
        log(f"frames kept in {args.keep_frames}")
    shutil.rmtree(tmp)
    for p in (mp4, mkv):
        log(f"{p}: {os.path.getsize(p) / 1024:.0f} KiB")
    log(f"done in {time.time() - t0:.1f}s")

if __name__ == "__main__":
    main()
