#!/usr/bin/env python3
"""A pre-encoded pool of camera-noise training frames: clean crops of the training data
made into short clips, given camera noise by the project's own `addnoise` element
(Poisson-Gaussian shot plus read noise, or white Gaussian; white or spatially
correlated), then compressed and decoded as a camera's stream is (x264 at a constant
quantizer, or JPEG at a quality, or not at all), with GStreamer.

Each run of gst-launch-1.0 takes one noise and codec setting (drawn at random) and a
few clips; a clip is `--frames` frames of one crop, still (a fixed camera) or panning
by a few pixels a frame (a handheld one), so that H.264's inter-frame prediction
treats the noise as it does in video. Per frame the pool keeps the clean and the
decoded noisy crop, its labels, the noise's nominal sigma (the std at mid-grey, as
`denoiseseg eval --noise camera` takes it; 8-bit units / 255) and the element's own
noise estimate of the decoded crop (`measure.estimate_sigma_element`, what the element
feeds the model with `noise-level=-1`).

The images are the training data of `train.py` (data.Batcher: generator scenes,
photographs, dead leaves), never ../shared/footage's evaluation frames.

    .venv/bin/python models/train/codec_pool.py --out models/train/data/codec_pool.npz --runs 48

Needs the built plugin (target/release, or GST_PLUGIN_PATH) and gst-launch-1.0.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data  # noqa: E402
from measure import estimate_sigma_element  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def addnoise_props(noise, sigma, correlation):
    """As `denoiseseg eval` (src/bin/denoiseseg/eval.rs): camera noise of std `sigma` at
    mid-grey is read noise sigma/2 plus shot noise with gain 0.75 sigma^2 / 128."""
    props = [f"sigma={sigma}"] if noise == "gaussian" else [
        "mode=poisson-gaussian", f"sigma={sigma / 2}", f"gain={0.75 * sigma * sigma / 128}"]
    if correlation > 0:
        props.append(f"correlation={correlation}")
    return props


def codec_chain(codec, q):
    if codec == "h264":
        return ["!", "videoconvert", "!", "video/x-raw,format=I420", "!", "x264enc", "pass=qual",
                f"quantizer={q}", "speed-preset=faster", "!", "h264parse", "!", "avdec_h264"]
    if codec == "jpeg":
        return ["!", "jpegenc", f"quality={q}", "!", "jpegdec"]
    return []


def draw_setting(rng):
    noise = "gaussian" if rng.random() < 0.25 else "camera"
    sigma = float(np.round(rng.uniform(4, 50), 1))
    correlation = 0.0 if rng.random() < 0.4 else float(np.round(rng.uniform(0.3, 1.2), 2))
    u = rng.random()
    if u < 0.6:
        codec, q = "h264", int(rng.integers(16, 35))
    elif u < 0.9:
        codec, q = "jpeg", int(rng.integers(30, 93))
    else:
        codec, q = "none", 0
    return dict(noise=noise, sigma=sigma, correlation=correlation, codec=codec, q=q)


def clips(batcher, rng, n, size, frames, pan):
    """n clips of `frames` crops of size x size (uint8) with their labels."""
    clean, labels = batcher.batch(n)
    clean = (clean.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    labels = labels.numpy().astype(np.uint8)
    ims = np.empty((n, frames, size, size, 3), np.uint8)
    lbs = np.empty((n, frames, size, size), np.uint8)
    for i in range(n):
        still = rng.random() < 0.5
        d = (0, 0) if still else tuple(int(v) for v in rng.integers(-3, 4, 2))
        y, x = pan, pan
        for t in range(frames):
            ims[i, t] = clean[i, y:y + size, x:x + size]
            lbs[i, t] = labels[i, y:y + size, x:x + size]
            y = int(np.clip(y + d[0], 0, 2 * pan))
            x = int(np.clip(x + d[1], 0, 2 * pan))
    return ims, lbs


def degrade(frames, setting, seed, tmp, env):
    """The frames ([T, h, w, 3] uint8) through addnoise and the codec, decoded."""
    t, h, w, _ = frames.shape
    src, dst = os.path.join(tmp, "in.rgb"), os.path.join(tmp, "out.rgb")
    frames.tofile(src)
    cmd = ["gst-launch-1.0", "-q", "filesrc", f"location={src}", f"blocksize={h * w * 3}", "!",
           "rawvideoparse", f"width={w}", f"height={h}", "format=rgb", "framerate=25/1", "!",
           "videoconvert", "!", "addnoise", f"seed={seed}",
           *addnoise_props(setting["noise"], setting["sigma"], setting["correlation"]),
           *codec_chain(setting["codec"], setting["q"]), "!", "videoconvert", "!",
           "video/x-raw,format=RGB", "!", "filesink", f"location={dst}"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"gst-launch failed ({' '.join(cmd)}):\n{r.stderr}")
    out = np.fromfile(dst, np.uint8)
    if out.size != frames.size:
        raise SystemExit(f"gst-launch gave {out.size // (h * w * 3)} frames for {t}")
    return out.reshape(frames.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(data.DATA_DIR, "codec_pool.npz"))
    ap.add_argument("--runs", type=int, default=48, help="gst-launch runs, one noise and codec setting each")
    ap.add_argument("--clips", type=int, default=16, help="clips per run")
    ap.add_argument("--frames", type=int, default=6, help="frames per clip")
    ap.add_argument("--size", type=int, default=160, help="crop size")
    ap.add_argument("--pan", type=int, default=8, help="largest pan from the centre, pixels")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scenes", type=int, default=3000)
    ap.add_argument("--rare-scenes", type=int, default=1000)
    ap.add_argument("--debian-photos", type=int, default=2, choices=[0, 1, 2])
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    full = args.size + 2 * args.pan
    # The data mix of the default model's training (train.py --natural-frac 0.5
    # --deadleaves-frac 0.25 --debian-photos 2 --rare-scenes 1000 --trams).
    batcher = data.Batcher(rng, full, n_scenes=args.scenes, natural_frac=0.5, deadleaves_frac=0.25,
                           photo_sets=args.debian_photos, rare_scenes=args.rare_scenes, trams=True)
    env = dict(os.environ)
    plugin = os.path.join(ROOT, "target", "release")
    env["GST_PLUGIN_PATH"] = os.pathsep.join(p for p in (env.get("GST_PLUGIN_PATH"), plugin) if p)
    n = args.runs * args.clips * args.frames
    s = args.size
    pool = {
        "clean": np.empty((n, s, s, 3), np.uint8),
        "noisy": np.empty((n, s, s, 3), np.uint8),
        "labels": np.empty((n, s, s), np.uint8),
        "sigma": np.empty(n, np.float32),
        "sigma_est": np.empty(n, np.float32),
        "run": np.empty(n, np.int32),
    }
    settings = []
    k = 0
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.runs):
            setting = draw_setting(rng)
            settings.append(setting)
            ims, lbs = clips(batcher, rng, args.clips, s, args.frames, args.pan)
            frames = ims.reshape(-1, s, s, 3)
            noisy = degrade(frames, setting, int(rng.integers(1 << 31)), tmp, env)
            m = len(frames)
            pool["clean"][k:k + m] = frames
            pool["noisy"][k:k + m] = noisy
            pool["labels"][k:k + m] = lbs.reshape(-1, s, s)
            pool["sigma"][k:k + m] = setting["sigma"] / 255.0
            pool["sigma_est"][k:k + m] = [estimate_sigma_element(f.astype(np.float32) / 255.0) for f in noisy]
            pool["run"][k:k + m] = r
            k += m
            psnr = 10 * np.log10(255.0 ** 2 / np.mean((noisy.astype(np.float64) - frames) ** 2))
            est = float(np.mean(pool["sigma_est"][k - m:k])) * 255
            print(f"run {r + 1}/{args.runs}: {setting} -> input {psnr:.2f} dB, element estimate {est:.1f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez(args.out + ".tmp.npz", settings=np.array([repr(x) for x in settings]), **pool)
    os.replace(args.out + ".tmp.npz", args.out)
    print(f"{n} frames in {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
