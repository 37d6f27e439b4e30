"""Networks: the SDB alternate-boosting joint model, its same-budget baselines, FFDNet,
and the ONNX export wrapper. Everything is fully convolutional (any H, W multiple of 8)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

NC = 19


def conv(ci, co, k=3, s=1, d=1):
    return nn.Conv2d(ci, co, k, s, padding=d * (k // 2), dilation=d)


def init_residual_denoiser(mod, out):
    """He (fan-in, ReLU) init of the 3x3 convolutions, zero SFT scale/shift and a zero
    last layer, so a residual denoiser starts as the identity with unit-gain features.
    With PyTorch's default init the deep plain denoiser's signal shrinks about 2.4x
    per layer and training at lr 1e-3..2e-3 stays stuck at the identity."""
    for m in mod.modules():
        if isinstance(m, nn.Conv2d):
            if m.kernel_size == (1, 1):
                nn.init.zeros_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)


def sigma_map(x, sigma):
    return sigma * torch.ones_like(x[:, :1])


class LightSeg(nn.Module):
    """Small segmenter: stride-8 encoder with dilated context, one stride-4 skip.
    Input: image (+ sigma map). Output: class logits at 1/4 resolution."""

    def __init__(self, width=64, use_sigma=True, nc=NC):
        super().__init__()
        self.use_sigma = use_sigma
        cin = 4 if use_sigma else 3
        self.e1 = conv(cin, 16, s=2)
        self.e2 = conv(16, 32, s=2)
        self.e3 = conv(32, width, s=2)
        self.c1 = conv(width, width, d=1)
        self.c2 = conv(width, width, d=2)
        self.c3 = conv(width, width, d=4)
        self.c4 = conv(width, width, d=8)
        self.fuse = conv(width + 32, 32)
        self.head = nn.Conv2d(32, nc, 1)

    def features(self, x, sigma=None):
        """The encoder's stride-4 and stride-8 features (the latter with dilated context)."""
        if self.use_sigma:
            x = torch.cat([x, sigma_map(x, sigma)], 1)
        f1 = F.relu(self.e1(x))
        f2 = F.relu(self.e2(f1))
        f = F.relu(self.e3(f2))
        f = f + F.relu(self.c1(f))
        f = f + F.relu(self.c2(f))
        f = f + F.relu(self.c3(f))
        f = f + F.relu(self.c4(f))
        return f2, f

    def forward(self, x, sigma=None):
        f2, f = self.features(x, sigma)
        f = F.interpolate(f, scale_factor=2.0, mode="bilinear", align_corners=False)
        f = F.relu(self.fuse(torch.cat([f, f2], 1)))
        return self.head(f)


class _DWSep(nn.Module):
    """Depthwise 3x3 (stride s) then pointwise 1x1, each with batch norm and ReLU."""

    def __init__(self, ci, co, s=1):
        super().__init__()
        self.dw = nn.Conv2d(ci, ci, 3, s, 1, groups=ci, bias=False)
        self.b1 = nn.BatchNorm2d(ci)
        self.pw = nn.Conv2d(ci, co, 1, bias=False)
        self.b2 = nn.BatchNorm2d(co)

    def forward(self, x):
        return F.relu(self.b2(self.pw(F.relu(self.b1(self.dw(x))))))


class _Bottleneck(nn.Module):
    """Inverted residual (expand 1x1, depthwise 3x3 with stride s and dilation d, project
    1x1), with a skip when the shape is kept."""

    def __init__(self, ci, co, s=1, t=6, d=1):
        super().__init__()
        h = ci * t
        self.body = nn.Sequential(
            nn.Conv2d(ci, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=True),
            nn.Conv2d(h, h, 3, s, d, dilation=d, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU(inplace=True),
            nn.Conv2d(h, co, 1, bias=False), nn.BatchNorm2d(co))
        self.skip = s == 1 and ci == co

    def forward(self, x):
        y = self.body(x)
        return x + y if self.skip else y


class FastSeg(nn.Module):
    """A deeper segmenter for the same compute as LightSeg(64), after Fast-SCNN (Poudel et
    al. 2019): a shallow learning-to-downsample path to 1/8 (the detail), a deep global
    path of inverted residuals to 1/32 with pooled context (what the object is), fused at
    1/8. About five times LightSeg(64)'s weights at two thirds of its multiply-adds.
    Input: image (+ sigma map). Output: class logits at 1/4 resolution, as LightSeg's."""

    def __init__(self, width=64, use_sigma=True, nc=NC):
        super().__init__()
        self.use_sigma = use_sigma
        cin = 4 if use_sigma else 3
        self.stem = nn.Sequential(nn.Conv2d(cin, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True))
        self.down = nn.Sequential(_DWSep(32, 48, 2), _DWSep(48, width, 2))
        c = width
        self.glob = nn.Sequential(
            _Bottleneck(c, c, 2), _Bottleneck(c, c), _Bottleneck(c, c),
            _Bottleneck(c, 96, 2), _Bottleneck(96, 96), _Bottleneck(96, 96),
            _Bottleneck(96, 128), _Bottleneck(128, 128, d=2), _Bottleneck(128, 128, d=4))
        self.ctx = nn.Conv2d(128, 32, 1)  # the whole frame's mean, a context every pixel sees
        self.proj = nn.Sequential(nn.Conv2d(128 + 32, 128, 1, bias=False), nn.BatchNorm2d(128))
        self.fuse_dw = nn.Sequential(nn.Conv2d(128, 128, 3, 1, 1, groups=128, bias=False), nn.BatchNorm2d(128),
                                     nn.ReLU(inplace=True), nn.Conv2d(128, 128, 1, bias=False), nn.BatchNorm2d(128))
        self.skip = nn.Sequential(nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128))
        self.cls = nn.Sequential(_DWSep(128, 128), _DWSep(128, 128))
        self.head = nn.Conv2d(128, nc, 1)

    def forward(self, x, sigma=None):
        if self.use_sigma:
            x = torch.cat([x, sigma_map(x, sigma)], 1)
        d = self.down(self.stem(x))  # 1/8
        g = self.glob(d)  # 1/32
        ctx = F.relu(self.ctx(g.mean((2, 3), keepdim=True))).expand(-1, -1, g.shape[2], g.shape[3])
        g = self.proj(torch.cat([g, ctx], 1))
        g = F.interpolate(g, size=d.shape[-2:], mode="bilinear", align_corners=False)
        f = F.relu(self.fuse_dw(g) + self.skip(d))
        lg = self.head(self.cls(f))
        return F.interpolate(lg, scale_factor=2.0, mode="bilinear", align_corners=False)


def make_seg(arch, width, use_sigma=True, nc=NC):
    """A segmenter by name: "light" (LightSeg) or "fast" (FastSeg)."""
    if arch == "light":
        return LightSeg(width, use_sigma, nc)
    if arch == "fast":
        return FastSeg(width, use_sigma, nc)
    raise ValueError(f"segmenter {arch!r}: expected light or fast")


def final_seg_prefix(sd):
    """The state-dict prefix of an SDB's final segmenter ("segs.<K>."), the one that
    reads the denoised image."""
    return f"segs.{max(int(k.split('.')[1]) for k in sd if k.startswith('segs.'))}."


def final_seg_state(sd):
    """(prefix, the final segmenter's own state dict) of an SDB state dict."""
    prefix = final_seg_prefix(sd)
    return prefix, {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def widen_lightseg(small, width):
    """A LightSeg(width) that computes exactly what `small` (a narrower LightSeg) does:
    the old weights in place, the new channels' incoming weights small and random (so
    they carry signal and learn) and every weight from a new channel to an old one zero
    (so the old outputs do not change), as in Net2Net's function-preserving widening."""
    old_w = small.c1.weight.shape[0]
    if width < old_w:
        raise ValueError(f"cannot widen a LightSeg({old_w}) to {width}")
    big = LightSeg(width, small.use_sigma, small.head.out_channels)
    with torch.no_grad():
        for name in ("e1", "e2", "e3", "c1", "c2", "c3", "c4", "fuse", "head"):
            a, b = getattr(small, name), getattr(big, name)
            b.weight.mul_(0.1)
            b.bias.zero_()
            co, ci = a.weight.shape[:2]
            if name == "fuse":  # input: the width features, then the 32 stride-4 ones
                b.weight[:, old_w:width].zero_()
                b.weight[:co, :old_w] = a.weight[:, :old_w]
                b.weight[:co, width:] = a.weight[:, old_w:]
            else:
                b.weight[:, ci:].zero_()
                b.weight[:co, :ci] = a.weight
            b.bias[:co] = a.bias
    return big


class SFT(nn.Module):
    """Spatial feature transform: per-pixel scale and shift from shared condition features."""

    def __init__(self, cc, c):
        super().__init__()
        self.g = nn.Conv2d(cc, c, 1)
        self.b = nn.Conv2d(cc, c, 1)

    def forward(self, f, cond):
        return f * (1 + self.g(cond)) + self.b(cond)


class DenoiseBlock(nn.Module):
    """Residual denoiser at half resolution (pixel-unshuffle x2) with a noise-level map;
    optionally conditioned on class logits through SFT layers."""

    def __init__(self, c=32, depth=3, cond=True, nc=NC):
        super().__init__()
        self.cond = cond
        self.inp = conv(12 + 1, c)
        self.body = nn.ModuleList([conv(c, c) for _ in range(depth)])
        if cond:
            self.cfeat = conv(nc, 32)
            self.sft = nn.ModuleList([SFT(32, c) for _ in range(2)])
        self.out = conv(c, 12)
        init_residual_denoiser(self, self.out)

    def forward(self, x, sigma, logits=None):
        z = F.pixel_unshuffle(x, 2)
        f = F.relu(self.inp(torch.cat([z, sigma_map(z, sigma)], 1)))
        if self.cond:
            cl = F.interpolate(logits, scale_factor=2.0, mode="bilinear", align_corners=False)
            cf = F.relu(self.cfeat(torch.softmax(cl, 1)))
            f = self.sft[0](f, cf)
        for i, layer in enumerate(self.body):
            f = F.relu(layer(f))
            if self.cond and i == max(0, len(self.body) // 2 - 1):
                f = self.sft[1](f, cf)
        return x - F.pixel_shuffle(self.out(f), 2)


class UNetDenoiser(nn.Module):
    """Residual three-level U-Net denoiser: pixel-unshuffle x2 with a noise-level map, then
    levels at 1/2, 1/4 and 1/8 resolution with c, 2c and 4c features (every convolution
    costs about the same per frame, the coarse levels give a receptive field of about
    140 pixels); skips are added. Optionally conditioned on class logits (given at 1/4
    resolution, as LightSeg makes them) through SFT layers at 1/4 and 1/8 resolution,
    where the semantics live."""

    def __init__(self, c=32, cond=True, nc=NC):
        super().__init__()
        self.cond = cond
        self.inp = conv(12 + 1, c)
        self.e1 = conv(c, c)
        self.down1 = conv(c, 2 * c, s=2)
        self.e2 = nn.ModuleList([conv(2 * c, 2 * c) for _ in range(2)])
        self.down2 = conv(2 * c, 4 * c, s=2)
        self.mid = nn.ModuleList([conv(4 * c, 4 * c) for _ in range(2)])
        self.up2 = nn.Conv2d(4 * c, 4 * 2 * c, 1)
        self.d2 = nn.ModuleList([conv(2 * c, 2 * c) for _ in range(2)])
        self.up1 = nn.Conv2d(2 * c, 4 * c, 1)
        self.d1 = nn.ModuleList([conv(c, c) for _ in range(2)])
        self.out = conv(c, 12)
        if cond:
            self.cfeat = conv(nc, 32)
            self.sft = nn.ModuleList([SFT(32, 2 * c), SFT(32, 4 * c), SFT(32, 2 * c)])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        if cond:  # SFT starts as the identity: the block starts as a plain denoiser
            for s in self.sft:
                for m in (s.g, s.b):
                    nn.init.zeros_(m.weight)
                    nn.init.zeros_(m.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x, sigma, logits=None):
        z = F.pixel_unshuffle(x, 2)
        f1 = F.relu(self.inp(torch.cat([z, sigma_map(z, sigma)], 1)))
        f1 = F.relu(self.e1(f1))
        f2 = F.relu(self.down1(f1))
        if self.cond:
            c4 = F.relu(self.cfeat(torch.softmax(logits, 1)))
            c8 = F.avg_pool2d(c4, 2)
        f2 = F.relu(self.e2[0](f2))
        if self.cond:
            f2 = self.sft[0](f2, c4)
        f2 = F.relu(self.e2[1](f2))
        f3 = F.relu(self.down2(f2))
        f3 = F.relu(self.mid[0](f3))
        if self.cond:
            f3 = self.sft[1](f3, c8)
        f3 = F.relu(self.mid[1](f3))
        g = F.relu(F.pixel_shuffle(self.up2(f3), 2)) + f2
        g = F.relu(self.d2[0](g))
        if self.cond:
            g = self.sft[2](g, c4)
        g = F.relu(self.d2[1](g))
        g = F.relu(F.pixel_shuffle(self.up1(g), 2)) + f1
        for layer in self.d1:
            g = F.relu(layer(g))
        return x - F.pixel_shuffle(self.out(g), 2)


class SDB(nn.Module):
    """K alternating segmentation-and-denoising blocks, then a final segmentation.
    Returns (list of denoised images, list of logits), the last of each is the output."""

    def __init__(self, blocks=2, c=32, depth=3, seg_width=64, arch="shallow", final_seg_width=None,
                 final_seg_arch="light"):
        super().__init__()
        self.segs = nn.ModuleList([LightSeg(seg_width) for _ in range(blocks)]
                                  + [make_seg(final_seg_arch, final_seg_width or seg_width)])
        if arch == "unet":
            self.dens = nn.ModuleList([UNetDenoiser(c, cond=True) for _ in range(blocks)])
        else:
            self.dens = nn.ModuleList([DenoiseBlock(c, depth, cond=True) for _ in range(blocks)])

    def forward(self, x, sigma, seg_grad=True):
        """seg_grad=False: the segmenters' inputs are detached, so the segmentation loss
        trains the segmenters only and the denoisers learn from the reconstruction loss
        (through which they still learn to use the class logits)."""
        ims, logs = [], []
        cur = x
        for k, d in enumerate(self.dens):
            lg = self.segs[k](cur if seg_grad else cur.detach(), sigma)
            cur = d(cur, sigma, lg)
            logs.append(lg)
            ims.append(cur)
        logs.append(self.segs[-1](cur if seg_grad else cur.detach(), sigma))
        return ims, logs

    def denoised(self, x, sigma):
        """The final denoised image, the input of the final segmenter (as in forward)."""
        cur = x
        for k, d in enumerate(self.dens):
            cur = d(cur, sigma, self.segs[k](cur, sigma))
        return cur


class PlainUNet(UNetDenoiser):
    """Same-budget plain U-Net denoiser: UNetDenoiser without the semantic conditioning."""

    def __init__(self, c=32):
        super().__init__(c, cond=False)


class PlainDenoiser(nn.Module):
    """Same-budget plain denoiser: FFDNet-like at half resolution, no semantics."""

    def __init__(self, c=48, depth=6):
        super().__init__()
        self.inp = conv(13, c)
        self.body = nn.ModuleList([conv(c, c) for _ in range(depth)])
        self.out = conv(c, 12)
        init_residual_denoiser(self, self.out)

    def forward(self, x, sigma):
        z = F.pixel_unshuffle(x, 2)
        f = F.relu(self.inp(torch.cat([z, sigma_map(z, sigma)], 1)))
        for layer in self.body:
            f = F.relu(layer(f))
        return x - F.pixel_shuffle(self.out(f), 2)


class FFDNet(nn.Module):
    """Colour FFDNet (Zhang et al. 2018) layout: unshuffle x2, noise map, 12 conv, shuffle."""

    def __init__(self, c=96, layers=12):
        super().__init__()
        mods = [nn.Conv2d(13, c, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            mods += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True)]
        mods += [nn.Conv2d(c, 12, 3, padding=1)]
        self.model = nn.Sequential(*mods)

    def forward(self, x, sigma):
        z = F.pixel_unshuffle(x, 2)
        return F.pixel_shuffle(self.model(torch.cat([z, sigma_map(z, sigma)], 1)), 2)


class LabelDecoder(nn.Module):
    """Dual task of segmentation, for the dual-learning consistency term: reconstructs the
    image at 1/4 resolution from class probabilities alone (what each class looks like
    here, with a little spatial context). Training only, never exported."""

    def __init__(self, nc=NC, c=32):
        super().__init__()
        self.body = nn.Sequential(conv(nc, c), nn.ReLU(inplace=True), conv(c, c, d=2), nn.ReLU(inplace=True),
                                  conv(c, 3))

    def forward(self, probs):
        return torch.sigmoid(self.body(probs))


# ----------------------------------------------------------------------------- export wrappers

def labels_from_logits(lg, scale):
    if scale != 1:
        lg = F.interpolate(lg, scale_factor=float(scale), mode="bilinear", align_corners=False)
    return torch.argmax(lg, 1).to(torch.uint8)


class ExportSDB(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image, sigma):
        ims, logs = self.net(image, sigma)
        return torch.clamp(ims[-1], 0, 1), labels_from_logits(logs[-1], 4)


class ExportDenoiser(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image, sigma):
        return torch.clamp(self.net(image, sigma), 0, 1)


class ExportSeg(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image, sigma):
        return labels_from_logits(self.net(image, sigma), 4)


def count_macs(model, *inputs):
    """Multiply-accumulates of all convolutions for one forward pass."""
    total = [0]

    def hook(m, i, o):
        k = m.kernel_size[0] * m.kernel_size[1]
        total[0] += o.numel() * (m.in_channels // m.groups) * k

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(*inputs)
    for h in hs:
        h.remove()
    return total[0]


class FFDSeg(nn.Module):
    """Quality variant: pretrained colour FFDNet (frozen) followed by a LightSeg trained on
    its outputs. Returns (denoised, logits)."""

    def __init__(self, seg_width=96):
        super().__init__()
        self.ffd = FFDNet()
        self.seg = LightSeg(seg_width)

    def forward(self, x, sigma):
        d = torch.clamp(self.ffd(x, sigma), 0, 1)
        return d, self.seg(d, sigma)


class ExportFFDSeg(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image, sigma):
        d, lg = self.net(image, sigma)
        return d, labels_from_logits(lg, 4)
