"""Measurements shared by evaluate.py and sigma_probe.py, with no PyTorch: PSNR and
SSIM on [0,1] RGB, an ONNX model on ONNX Runtime's CPU provider, and the noise-level
estimators (plain Immerkaer, and NumPy ports of the element's SigmaEstimator in
src/noise.rs)."""
import cv2
import numpy as np


def psnr(a, b):
    return float(10 * np.log10(1.0 / max(np.mean((a - b) ** 2), 1e-12)))


def ssim(a, b):
    from skimage.metrics import structural_similarity
    return float(structural_similarity(a, b, channel_axis=2, data_range=1.0))


def estimate_sigma_immerkaer(img):
    """Immerkaer (1996) fast noise std estimate, [0,1] scale: the mean absolute
    residual, pooled over the three channels. (Run on each channel: the channel mean
    would carry sigma / sqrt(3) of independent per-channel noise.)"""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    h, w = img.shape[:2]
    tot = sum(np.abs(cv2.filter2D(img[..., c].astype(np.float64), -1, k)[1:-1, 1:-1]).sum() for c in range(3))
    return float(np.sqrt(np.pi / 2) * tot / (3 * 6 * (w - 2) * (h - 2)))


# SigmaEstimator's second pass (src/noise.rs): only the 3x3 windows whose mean lies
# s1^2 / CLIP_MARGIN_SCALE (at most CLIP_MARGIN_MAX) inside [0, 1], s1 the first pass's
# estimate, and only if at least 1/MIN_KEPT_SHARE of the first pass's pixels are left
CLIP_MARGIN_SCALE, CLIP_MARGIN_MAX, MIN_KEPT_SHARE = 0.09, 0.3, 8


def _saturated(v):
    """Samples clipped to 0 or 1 (src/noise.rs `saturated`)."""
    return ~((v > 1e-6) & (v < 1 - 1e-6))


def _element_pass(x, budget, lo, centre_only=False, keep=0.5):
    """One pass of SigmaEstimator (src/noise.rs) on planar x [3, h, w]: (sigma, kept pixels,
    the gradient threshold |Gx| + |Gy| of the pixels kept, on the [0,1] scale)."""
    _, h, w = x.shape
    step = max(1, -(-((w - 2) * (h - 2)) // budget))

    def parts(rows):
        r0, r1, r2 = x[:, rows - 1], x[:, rows], x[:, rows + 1]
        gx = (r0[..., 2:] + 2 * r1[..., 2:] + r2[..., 2:]) - (r0[..., :-2] + 2 * r1[..., :-2] + r2[..., :-2])
        gy = (r2[..., :-2] + 2 * r2[..., 1:-1] + r2[..., 2:]) - (r0[..., :-2] + 2 * r0[..., 1:-1] + r0[..., 2:])
        gb = np.minimum(((np.abs(gx) + np.abs(gy)) * np.float32(510.0)).astype(np.int64), 4095)
        if centre_only:
            ok = ~_saturated(r1[..., 1:-1])
        else:
            # column sums (+inf where a sample is saturated), summed over the window, as
            # WindowBounds::keeps in src/noise.rs
            col = np.where(_saturated(r0) | _saturated(r1) | _saturated(r2), np.float32(np.inf), r0 + r1 + r2)
            win = col[..., :-2] + col[..., 1:-1] + col[..., 2:]
            m = np.float32(lo)
            ok = (win >= np.float32(9) * m) & (win <= np.float32(9) * (np.float32(1) - m))
        return gb, ok, r0, r1, r2

    gb, ok, *_ = parts(np.arange(1, h - 1, step * 4))
    gb = gb[ok]
    if gb.size == 0:
        return 0.0, 0, 0.0
    hist = np.bincount(gb, minlength=4096)
    thr = int(np.searchsorted(np.cumsum(hist), np.ceil(gb.size * keep)))
    gb, ok, r0, r1, r2 = parts(np.arange(1, h - 1, step))
    corners = r0[..., :-2] + r0[..., 2:] + r2[..., :-2] + r2[..., 2:]
    edges = r0[..., 1:-1] + r1[..., :-2] + r1[..., 2:] + r2[..., 1:-1]
    res = corners - 2 * edges + 4 * r1[..., 1:-1]
    rb = np.minimum((np.abs(res) * np.float32(2040.0)).astype(np.int64), 8191)[ok & (gb <= thr)]
    if rb.size == 0:
        return 0.0, 0, thr / 510.0
    hist = np.bincount(rb, minlength=8192)
    cum = np.cumsum(hist)
    target = rb.size / 2.0
    b = int(np.searchsorted(cum, target))
    before = cum[b - 1] if b > 0 else 0
    med = b + (target - before) / hist[b]
    return float(med / 2040.0 / (6.0 * 0.67448975)), int(rb.size), thr / 510.0


def estimate_sigma_element1(img, budget=1 << 16):
    """The element's estimator before default 1.8.0 (one pass, only the centre pixel's
    saturation checked): what the --sigma-est-frac probes of 1.7.0 were trained with, and
    what the card's σ-estimated figures of the models before 1.8.0 came from (marked †)
    until every model was measured again with the two-pass estimator."""
    x = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
    if x.shape[1] < 3 or x.shape[2] < 3:
        return 0.0
    return _element_pass(x, budget, 0.0, centre_only=True)[0]


def estimate_sigma_element_fine(img, budget=1 << 16, keep=0.5, with_threshold=False):
    """One scale of the element's estimator (the whole of it before the coarse scale was
    added), a NumPy port of SigmaEstimator::estimate_white in src/noise.rs: Immerkaer residuals of the smoother half of the pixels (Sobel
    |Gx|+|Gy| at or below its median), 3x3 windows with a saturated pixel skipped,
    channels pooled, sigma = median|res| / (6 * 0.6745), same histogram bins and row
    subsampling; then the same again on the windows whose mean is at least
    s1^2 / CLIP_MARGIN_SCALE from 0 and 1 (s1 the first estimate), where clipping has
    not thinned the noise. `keep` other than 0.5 keeps that share of the pixels, the
    smoothest, instead of half (an experiment: the element keeps half). With
    `with_threshold`: (sigma, the Sobel threshold of the pixels used)."""
    x = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
    if x.shape[1] < 3 or x.shape[2] < 3:
        return (0.0, 0.0) if with_threshold else 0.0
    s0, n0, t0 = _element_pass(x, budget, 0.0, keep=keep)
    if s0 <= 0:
        return (s0, t0) if with_threshold else s0
    s0f = np.float32(s0)
    s1, n1, t1 = _element_pass(x, budget, min(s0f * s0f / np.float32(CLIP_MARGIN_SCALE), np.float32(CLIP_MARGIN_MAX)),
                           keep=keep)
    s, t = (s1, t1) if n1 * MIN_KEPT_SHARE >= n0 else (s0, t0)
    return (s, t) if with_threshold else s


# SigmaEstimator's coarse scale (src/noise.rs): trusted while the Sobel threshold of its
# smoother half is at most MAX_COARSE_GRADIENT times its estimate; a quarter of the budget
MAX_COARSE_GRADIENT, COARSE_BUDGET_SHARE = 16.0, 4


def estimate_sigma_element(img, budget=1 << 16):
    """The element's own estimator, a NumPy port of SigmaEstimator::estimate in
    src/noise.rs: the fine-scale estimate (estimate_sigma_element_fine), and twice the
    same estimate on the frame averaged over 2x2 blocks when that is larger and the
    coarse scale's smoother half is noise, not texture (its Sobel threshold at most
    MAX_COARSE_GRADIENT times its estimate)."""
    fine = estimate_sigma_element_fine(img, budget)
    h, w = img.shape[0] // 2, img.shape[1] // 2
    if h < 3 or w < 3:
        return fine
    coarse = img[: 2 * h, : 2 * w].astype(np.float32).reshape(h, 2, w, 2, 3).mean(axis=(1, 3), dtype=np.float32)
    sigma, grad = estimate_sigma_element_fine(coarse, budget // COARSE_BUDGET_SHARE, with_threshold=True)
    return max(fine, 2 * sigma if 0 < grad <= MAX_COARSE_GRADIENT * sigma else 0.0)


estimate_sigma = estimate_sigma_element


class Onnx:
    def __init__(self, path):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        self.s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.outs = [o.name for o in self.s.get_outputs()]
        self.has_sigma = any(i.name == "sigma" for i in self.s.get_inputs())

    def __call__(self, img, sigma):
        feed = {"image": img.transpose(2, 0, 1)[None].astype(np.float32)}
        if self.has_sigma:
            feed["sigma"] = np.full((1, 1, 1, 1), sigma, np.float32)
        res = dict(zip(self.outs, self.s.run(None, feed)))
        out = {}
        if "denoised" in res:
            out["denoised"] = res["denoised"][0].transpose(1, 2, 0)
        if "labels" in res:
            out["labels"] = res["labels"][0]
        return out


