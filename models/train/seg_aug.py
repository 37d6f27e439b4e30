"""Segmentation augmentation for the synthetic-to-real gap (issue 19).

The generator's scenes have flat, class-specific colours and one camera; real frames do
not. Applied to a labelled crop (uint8 HxWx3, labels HxW) before the noise is added, so
the segmenter learns layout and shape rather than the generator's palette:

- texture randomization: a few classes of the crop are modulated by the high-passed
  luminance of a random photograph crop (`photos`: the natural images the card lists),
  so texture stops naming the class;
- photometric jitter: white balance, saturation, brightness, contrast, gamma, rarely
  greyscale;
- camera effects: defocus blur, JPEG at q 30..90, vignetting.

Zoom (close-ups and wide views) is done by the Batcher's crop (`zoom`), which resamples
the label map with the image.
"""
import cv2
import numpy as np


def _photo_texture(rng, photos, h, w):
    """Zero-mean, unit-std high-pass luminance of a random h x w crop of a random photo."""
    ph = photos[rng.integers(len(photos))]
    s = rng.uniform(0.25, 1.0)
    ch, cw = max(8, int(h / s)), max(8, int(w / s))
    if ph.shape[0] < ch or ph.shape[1] < cw:
        ph = cv2.resize(ph, (max(cw, ph.shape[1]), max(ch, ph.shape[0])), interpolation=cv2.INTER_LINEAR)
    y = rng.integers(0, ph.shape[0] - ch + 1)
    x = rng.integers(0, ph.shape[1] - cw + 1)
    g = cv2.cvtColor(np.ascontiguousarray(ph[y:y + ch, x:x + cw]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    if (ch, cw) != (h, w):
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA)
    g = g - cv2.GaussianBlur(g, (0, 0), rng.uniform(4.0, 16.0))
    return g / max(float(g.std()), 1.0)


def augment(rng, im, lb, photos, ignore=255):
    """A photometrically and texturally randomized copy of the uint8 RGB crop `im`."""
    h, w = lb.shape
    x = im.astype(np.float32) / 255.0
    if photos and rng.random() < 0.4:
        present = [c for c in np.unique(lb) if c != ignore]
        for c in rng.permutation(present)[: rng.integers(1, 4)]:
            m = (lb == c)[..., None]
            t = _photo_texture(rng, photos, h, w)[..., None]
            x = np.where(m, x * (1.0 + rng.uniform(0.05, 0.3) * t), x)
    # photometric jitter
    x = x * np.exp(rng.normal(0.0, 0.08, 3)).astype(np.float32)
    grey = x.mean(axis=2, keepdims=True)
    sat = 0.0 if rng.random() < 0.05 else rng.uniform(0.3, 1.4)
    x = grey + (x - grey) * sat
    x = (x - x.mean()) * rng.uniform(0.7, 1.3) + x.mean() * rng.uniform(0.6, 1.4)
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.3:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / float(h * h + w * w)
        x = x * (1.0 - rng.uniform(0.2, 0.8) * r2)[..., None]
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.5))
    out = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, enc = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
        if ok:
            out = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(out)
