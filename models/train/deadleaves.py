"""Textured dead-leaves images: a procedural stand-in for natural-image statistics.

Natural images are, to a first approximation, occluding objects of all sizes: the
dead-leaves model (Matheron; Lee, Mumford and Huang 2001) drops random shapes whose
radius follows a power law r^-3, which gives the scale invariance and the 1/f^2 power
spectrum of natural photographs. Filled with flat colours only, the leaves teach a
denoiser sharp edges but no texture; following Achddou, Gousseau and Ladjal ("Fully
synthetic training for image restoration tasks", 2023) each leaf here also carries
one of a few textures (a colour gradient, a sinusoidal grating, fractal 1/f noise),
and the whole image gets a random blur (depth of field) and contrast.

Used by data.Batcher as a denoising-only source (labels = ignore): the street-scene
generator alone gives the denoisers its own rendering look, and the handful of
photographs in scikit-image too few textures.

    python deadleaves.py sheet.png      # contact sheet of the first 12 images
"""
import sys

import cv2
import numpy as np


def _fractal_noise(rng, h, w, beta):
    """Zero-mean, unit-std noise with a 1/f^beta amplitude spectrum."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spec = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / f ** beta
    spec[0, 0] = 0.0
    n = np.fft.irfft2(spec, s=(h, w))
    return (n / (n.std() + 1e-8)).astype(np.float32)


def _colour(rng):
    """A colour with natural-ish statistics: luminance spread over the whole range,
    saturation mostly low."""
    lum = rng.beta(1.6, 1.6)
    sat = rng.beta(1.2, 3.0)
    hue = rng.normal(size=3)
    hue -= hue.mean()
    hue /= np.abs(hue).max() + 1e-6
    return np.clip(lum + sat * 0.35 * hue, 0.0, 1.0).astype(np.float32)


def _texture(rng, h, w, base):
    """One leaf's fill: flat, gradient, grating or fractal noise around `base`."""
    kind = rng.choice(4, p=[0.3, 0.2, 0.2, 0.3])
    out = np.empty((h, w, 3), np.float32)
    out[:] = base
    if kind == 0:
        return out
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 1:  # linear colour gradient
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy) / max(h, w)
        other = _colour(rng)
        return out + t[..., None] * (other - base)
    if kind == 2:  # sinusoidal grating (stripes, fabric, railings)
        a = rng.uniform(0, 2 * np.pi)
        period = np.exp(rng.uniform(np.log(2.5), np.log(24.0)))
        amp = rng.uniform(0.05, 0.35)
        g = np.sin(2 * np.pi * (np.cos(a) * xx + np.sin(a) * yy) / period + rng.uniform(0, 2 * np.pi))
        tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
        return out + amp * g[..., None] * tint
    # fractal noise (foliage, stone, asphalt, bark)
    beta = rng.uniform(0.8, 1.8)
    n = _fractal_noise(rng, h, w, beta)
    amp = rng.uniform(0.03, 0.25)
    tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    return out + amp * n[..., None] * tint


def render(seed, width=192, height=192, ss=2):
    """One textured dead-leaves image, float32 [height, width, 3] in [0, 1].

    Rendered at `ss` times the size and area-downsampled, so edges are anti-aliased
    as a camera's are."""
    rng = np.random.default_rng(seed)
    W, H = width * ss, height * ss
    img = np.empty((H, W, 3), np.float32)
    img[:] = _colour(rng)
    rmin, rmax = 2.0 * ss, 0.6 * max(W, H)
    # r ~ r^-3 on [rmin, rmax] (inverse CDF of the truncated power law), in random
    # order, until the canvas is covered several times over
    mean_area = 2 * np.pi * np.log(rmax / rmin) / (1 / rmin ** 2 - 1 / rmax ** 2)
    n_leaves = int(rng.uniform(2.0, 4.0) * W * H / mean_area)
    u = rng.random(n_leaves)
    radii = 1.0 / np.sqrt(u / rmin ** 2 + (1 - u) / rmax ** 2)
    for r in radii:
        cx, cy = rng.uniform(-0.1 * W, 1.1 * W), rng.uniform(-0.1 * H, 1.1 * H)
        x0, x1 = int(max(0, cx - r - 1)), int(min(W, cx + r + 2))
        y0, y1 = int(max(0, cy - r - 1)), int(min(H, cy + r + 2))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        h, w = y1 - y0, x1 - x0
        mask = np.zeros((h, w), np.uint8)
        c = (int(round((cx - x0) * 4)), int(round((cy - y0) * 4)))  # 2 fractional bits
        shape = rng.choice(3, p=[0.45, 0.3, 0.25])
        if shape == 0:
            cv2.circle(mask, c, int(r * 4), 255, -1, cv2.LINE_8, 2)
        elif shape == 1:
            axes = (int(r * 4), int(r * 4 * rng.uniform(0.2, 1.0)))
            cv2.ellipse(mask, c, axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_8, 2)
        else:
            k = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * rng.uniform(0.5, 1.0, k)
            pts = np.stack([cx - x0 + rad * np.cos(ang), cy - y0 + rad * np.sin(ang)], 1)
            cv2.fillPoly(mask, [np.round(pts * 4).astype(np.int32)], 255, cv2.LINE_8, 2)
        m = mask > 0
        if not m.any():
            continue
        tex = _texture(rng, h, w, _colour(rng))
        img[y0:y1, x0:x1][m] = tex[m]
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.4:  # depth of field
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.6))
    # global contrast and gamma, as exposure and tone curves vary
    g = rng.uniform(0.7, 1.4)
    img = np.clip(img, 0.0, 1.0) ** g
    lo, hi = rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0)
    return np.clip(lo + (hi - lo) * img, 0.0, 1.0).astype(np.float32)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "deadleaves.png"
    tiles = [render(i) for i in range(12)]
    rows = [np.concatenate(tiles[r * 4:(r + 1) * 4], 1) for r in range(3)]
    sheet = np.concatenate(rows, 0)
    cv2.imwrite(out, np.round(sheet[..., ::-1] * 255).astype(np.uint8))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
