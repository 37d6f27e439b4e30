"""Losses of train.py: segmentation cross-entropy (with optional class weights), the
reconstruction error (L1 or RMSE per crop, optionally noise-weighted), the D2SM-style
semantic feature-statistics term and the dual-learning term. The networks they act on
are in nets.py (the dual term's LabelDecoder too); train.py composes them."""
import numpy as np
import torch
import torch.nn.functional as F

import nets
from cityscapes_labels import IGNORE


def ce(logits, lab, weight=None):
    lg = F.interpolate(logits, size=lab.shape[-2:], mode="bilinear", align_corners=False)
    valid = (lab != IGNORE).sum()
    if valid == 0:
        return lg.sum() * 0.0
    return F.cross_entropy(lg, lab, weight=weight, ignore_index=IGNORE, reduction="sum") / valid


def rec_error(out, clean, sigma, sigma0=0.0, kind="l1"):
    """Reconstruction loss: each crop's mean absolute error (kind "l1") or its root mean
    square error (kind "rmse"; 1e-8 inside the root). RMSE has the scale of L1 but its
    minimiser is the minimiser of the squared error, the error PSNR measures. A crop's
    weighted RMSE has w / (2 RMSE) times the gradient of its squared error, -PSNR has
    1 / MSE times it: with the sigma weighting below, which falls somewhat faster than a
    denoiser's error grows with the noise, the noise levels count roughly alike in
    decibels, the low ones a little more.

    With sigma0 > 0 (8-bit units) each crop's error is weighted by (25 + sigma0) / (its sigma
    + sigma0): the error of a denoiser grows with the noise, so a plain mean lets the noisiest
    crops dominate the gradient and the low-noise ones (where detail must be kept) count
    little. A sigma-25 crop keeps weight 1."""
    if kind == "rmse":
        per = ((out - clean) ** 2).mean(dim=(1, 2, 3)).add(1e-8).sqrt()
    else:
        per = (out - clean).abs().mean(dim=(1, 2, 3))
    if sigma0 <= 0:  # crops of one size: the mean of the crops' means is the plain mean
        return per.mean()
    w = (25.0 + sigma0) / (sigma.flatten() * 255.0 + sigma0)
    return (per * w).mean()


def class_weights(freq, power, cap=10.0, boost=None):
    """(median frequency / frequency) ** power per class, times the factors of `boost`
    ({class id: factor}), scaled so that the average weight of a labelled pixel is 1 (the
    loss keeps its scale), then capped; absent classes get the cap."""
    f = np.asarray(freq, np.float64)
    med = np.median(f[f > 0])
    w = np.where(f > 0, (med / np.maximum(f, 1e-12)) ** power, 0.0)
    for c, k in (boost or {}).items():
        w[c] *= k
    w = w / max((w * f).sum(), 1e-12)
    w = np.where(f > 0, np.minimum(w, cap), cap)
    return torch.tensor(w, dtype=torch.float32)


def feature_stats_loss(feats_a, feats_b):
    """D2SM-style semantic feature statistics matching: L1 between the per-image,
    per-channel mean and standard deviation of two lists of feature maps."""
    loss = 0.0
    for a, b in zip(feats_a, feats_b):
        loss = loss + F.l1_loss(a.mean((2, 3)), b.mean((2, 3))) + F.l1_loss(a.std((2, 3)), b.std((2, 3)))
    return loss


def dual_loss(decoder, logits, clean, lab):
    """Dual-learning term (--dual-weight): the label decoder (nets.LabelDecoder) learns
    appearance from the true labels; the same decoder on the predicted classes (softmax of
    `logits`) must explain the clean image too (gradient into the segmenters). L1 at 1/4
    size over the pixels whose 4x4 cell is all labelled."""
    small = F.avg_pool2d(clean, 4)
    onehot = F.one_hot(lab.clamp(max=nets.NC - 1), nets.NC).permute(0, 3, 1, 2).float()
    onehot = F.avg_pool2d(onehot, 4)
    known = F.avg_pool2d((lab != IGNORE).float()[:, None], 4) > 0.99
    pred = torch.softmax(logits, 1)
    gt_rec, pred_rec = decoder(onehot), decoder(pred)
    w = known.float()
    denom = w.sum().clamp(min=1) * 3
    return ((gt_rec - small).abs() * w).sum() / denom + ((pred_rec - small).abs() * w).sum() / denom


def consistency_loss(lg_a, lg_b):
    """Two views of one crop (independent noise draws) should get the same class map:
    the squared difference of their class probabilities, summed over classes, mean over
    pixels. Symmetric, bounded by 2 per pixel, no labels needed."""
    pa, pb = F.softmax(lg_a, 1), F.softmax(lg_b, 1)
    return ((pa - pb) ** 2).sum(1).mean()
