"""Procedural Cityscapes-like street scenes seen from a car, with exact train-id labels.

Every scene is a function of one integer seed: ``render(seed, width, height)`` returns
``(image float32 HxWx3 in [0,1], labels uint8 HxW in 0..18)``. The camera model is a
pinhole at height 1 (unit = camera height, about 1.5 m) looking along the street:
a ground point at depth z lies on row ``yh + F/z`` and a point at lateral offset X on
column ``xv + F*X/z``, so road, lane markings, sidewalks, facades and objects share
one perspective. Objects are painted far to near (occlusion); labels are painted
with the same polygons without anti-aliasing. Photometric variety: weather (clear,
overcast, dusk, fog, night-ish), colour casts, per-class textures, shadows, blur.
"""
import math

import cv2
import numpy as np

from cityscapes_labels import (ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN,
                               VEG, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS, TRAIN,
                               MOTO, BIKE)

SHIFT = 4  # cv2 sub-pixel bits
SC = float(1 << SHIFT)

# texture amplitude per class (multiplicative fractal noise) and fine grain
TEX_AMP = np.array([0.10, 0.08, 0.12, 0.10, 0.06, 0.05, 0.04, 0.04, 0.30, 0.22, 0.04,
                    0.08, 0.08, 0.05, 0.06, 0.06, 0.06, 0.06, 0.06], np.float32)
GRAIN_AMP = np.array([0.06, 0.05, 0.04, 0.05, 0.02, 0.02, 0.02, 0.02, 0.10, 0.08, 0.00,
                      0.03, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02], np.float32)


def fractal(rng, h, w, base=4, octaves=5, persistence=0.55):
    out = np.zeros((h, w), np.float32)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        gh, gw = max(2, (base << o) * h // max(h, w) + 1), max(2, (base << o) * w // max(h, w) + 1)
        g = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        tot += amp
        amp *= persistence
    return out / tot


# the real look's fine grain: grass and leaves, paving, asphalt
REAL_GRAIN_AMP = GRAIN_AMP.copy()
REAL_GRAIN_AMP[[0, 1, 8, 9]] = [0.10, 0.10, 0.25, 0.22]


def _col(rng, base, jitter=0.08):
    c = np.asarray(base, np.float32) + rng.uniform(-jitter, jitter, 3).astype(np.float32)
    return np.clip(c, 0.0, 1.0)


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.img = np.zeros((h, w, 3), np.float32)
        self.lab = np.zeros((h, w), np.uint8)

    def poly(self, pts, cls, color):
        p = np.round(np.asarray(pts, np.float64) * SC).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.img, [p], tuple(float(c) for c in color), cv2.LINE_AA, SHIFT)
        cv2.fillPoly(self.lab, [p], int(cls), cv2.LINE_8, SHIFT)

    def rect(self, x0, y0, x1, y1, cls, color):
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], cls, color)

    def ellipse(self, cx, cy, rx, ry, cls, color, angle=0.0):
        c = (int(round(cx * SC)), int(round(cy * SC)))
        ax = (max(1, int(round(rx * SC))), max(1, int(round(ry * SC))))
        cv2.ellipse(self.img, c, ax, angle, 0, 360, tuple(float(v) for v in color), -1, cv2.LINE_AA, SHIFT)
        cv2.ellipse(self.lab, c, ax, angle, 0, 360, int(cls), -1, cv2.LINE_8, SHIFT)

    def ring(self, cx, cy, r, thick, cls, color):
        c = (int(round(cx * SC)), int(round(cy * SC)))
        rr = max(1, int(round(r * SC)))
        t = max(1, int(round(thick)))
        cv2.circle(self.img, c, rr, tuple(float(v) for v in color), t, cv2.LINE_AA, SHIFT)
        cv2.circle(self.lab, c, rr, int(cls), t, cv2.LINE_8, SHIFT)

    def line(self, x0, y0, x1, y1, thick, cls, color):
        """cls None paints the image only: things thinner than the label maps resolve
        (overhead wires), which keep the label of what lies behind them."""
        a = (int(round(x0 * SC)), int(round(y0 * SC)))
        b = (int(round(x1 * SC)), int(round(y1 * SC)))
        t = max(1, int(round(thick)))
        cv2.line(self.img, a, b, tuple(float(v) for v in color), t, cv2.LINE_AA, SHIFT)
        if cls is not None:
            cv2.line(self.lab, a, b, int(cls), t, cv2.LINE_8, SHIFT)


class Camera:
    """Pinhole at height H (unit: the car camera's height) looking level; the horizon on
    row yh (negative: above the frame, a camera pitched down approximated by a shifted
    principal point, so verticals stay vertical). F is the focal length in pixels; by
    default the bottom row is at depth 1 (the car camera of the v1 look). z0 is the
    depth of the ground at the bottom row."""

    def __init__(self, w, h, yh, xv, H=1.0, F=None):
        self.w, self.h, self.yh, self.xv, self.H = w, h, yh, xv, H
        self.F = (h - yh) * 1.0 if F is None else float(F)
        self.z0 = self.F * H / (h - yh)

    def ground(self, X, z):
        return self.xv + self.F * X / z, self.yh + self.F * self.H / z

    def point(self, X, Y, z):  # Y = height above ground
        return self.xv + self.F * X / z, self.yh + self.F * (self.H - Y) / z

    def scale(self, z):
        return self.F / z


# ----------------------------------------------------------------------------- background

WEATHERS = ["clear", "overcast", "dusk", "fog", "night"]
# lawn colours of the real look: fresh, winter, dry, shaded
LAWNS = [(0.30, 0.45, 0.15), (0.38, 0.50, 0.22), (0.42, 0.46, 0.28), (0.50, 0.47, 0.30), (0.22, 0.32, 0.14)]


def sky(rng, cv, cam, weather):
    h, w = cv.h, cv.w
    if weather == "clear":
        top, hor = _col(rng, (0.30, 0.50, 0.85)), _col(rng, (0.70, 0.80, 0.92))
    elif weather == "overcast":
        g = rng.uniform(0.6, 0.9)
        top, hor = _col(rng, (g, g, g + 0.03), 0.04), _col(rng, (g + 0.05,) * 3, 0.04)
    elif weather == "dusk":
        top, hor = _col(rng, (0.25, 0.25, 0.5)), _col(rng, (0.95, 0.6, 0.35))
    elif weather == "fog":
        g = rng.uniform(0.7, 0.9)
        top = hor = _col(rng, (g, g, g), 0.03)
    else:
        top, hor = _col(rng, (0.05, 0.06, 0.12), 0.03), _col(rng, (0.2, 0.18, 0.2), 0.05)
    t = np.clip(np.arange(h, dtype=np.float32) / max(cam.yh, 1.0), 0, 1)[:, None, None]
    cv.img[:] = top * (1 - t) + hor * t
    cv.lab[:] = SKY
    if weather in ("clear", "overcast", "dusk"):
        cl = np.clip(fractal(rng, h, w, base=3) * 1.5 + rng.uniform(-0.5, 0.5), 0, 1)[..., None]
        cv.img[:] = cv.img * (1 - 0.7 * cl) + 0.9 * cl * (0.7 if weather != "dusk" else 0.5)


def ground_and_road(rng, cv, cam, real=False):
    """real=True (the real look): grey asphalt, lawns and plazas that may be many road
    widths wide; real=False makes exactly the draws of the v1 look."""
    h, w, yh, xv = cv.h, cv.w, cam.yh, cam.xv
    terr = _col(rng, (0.35, 0.45, 0.22) if rng.random() < 0.7 else (0.5, 0.42, 0.3), 0.08)
    if real:
        terr = _col(rng, LAWNS[rng.integers(len(LAWNS))], 0.06)
    cv.rect(-5, yh, w + 5, h + 5, TERRAIN, terr)
    # road and sidewalks as lateral offsets X (camera height units)
    road_l = -rng.uniform(1.2, 4.5)
    road_r = rng.uniform(1.2, 4.5)
    zf = 400.0
    zn = 0.6 * cam.z0  # below the bottom row

    def strip(x0, x1, cls, color):
        a0 = cam.ground(x0, zn); b0 = cam.ground(x1, zn)
        c = cam.ground(x1, zf); d = cam.ground(x0, zf)
        cv.poly([a0, b0, c, d], cls, color)
    asphalt = _col(rng, (0.33, 0.33, 0.35), 0.07)
    if real:
        asphalt = np.full(3, rng.uniform(0.2, 0.55), np.float32) + rng.uniform(-0.02, 0.02, 3).astype(np.float32)
    strip(road_l, road_r, ROAD, asphalt)
    sides = {}
    for side, edge in (("l", road_l), ("r", road_r)):
        kind = rng.choice(["sidewalk", "sidewalk", "sidewalk", "grass", "parking"])
        width = rng.uniform(1.0, 3.5)
        if real and rng.random() < 0.45:  # a park or a square beside the road
            kind = "lawn" if rng.random() < 0.65 else "sidewalk"
            width = rng.uniform(3.0, 25.0)
        outer = edge - width if side == "l" else edge + width
        lo, hi = (outer, edge) if side == "l" else (edge, outer)
        if kind == "sidewalk":
            col = _col(rng, (0.6, 0.58, 0.55), 0.08)
            strip(lo, hi, SIDEWALK, col)
            # curb and tiles
            cx = edge
            p0, p1 = cam.ground(cx, zn), cam.ground(cx, zf)
            cv.line(p0[0], p0[1], p1[0], p1[1], 2, SIDEWALK, col * 1.2)
            for k in range(1, 40):
                z = cam.z0 + k * 0.8
                a, b = cam.ground(lo, z), cam.ground(hi, z)
                if b[1] - cam.yh < 1.0:
                    break
                cv.line(a[0], a[1], b[0], b[1], 1, SIDEWALK, col * 0.85)
        elif kind == "lawn":
            strip(lo, hi, TERRAIN, terr * rng.uniform(0.85, 1.15))
            if rng.random() < 0.5:  # a footpath across or along the lawn
                m = rng.uniform(lo, hi)
                pw = rng.uniform(0.4, 1.5)
                strip(m - pw / 2, m + pw / 2, SIDEWALK, _col(rng, (0.6, 0.58, 0.55), 0.1))
        elif kind == "grass":
            g = rng.uniform(0.15, 0.6)
            mid = edge - g * width if side == "l" else edge + g * width
            a, b = (mid, edge) if side == "l" else (edge, mid)
            strip(a, b, TERRAIN, _col(rng, (0.35, 0.5, 0.2), 0.08))
            a, b = (outer, mid) if side == "l" else (mid, outer)
            strip(a, b, SIDEWALK, _col(rng, (0.6, 0.58, 0.55), 0.08))
        else:  # parking lane belongs to the road in Cityscapes? no: it is its own class, mapped to ignore;
            # we paint it as road-coloured sidewalk-level asphalt and call it sidewalk to stay exact
            strip(lo, hi, SIDEWALK, _col(rng, (0.45, 0.44, 0.44), 0.05))
        sides[side] = outer
    # lane markings (label road)
    nl = rng.integers(0, 3)
    white = _col(rng, (0.9, 0.9, 0.88), 0.05)
    yellow = _col(rng, (0.9, 0.75, 0.2), 0.05)
    for i in range(nl + 1):
        X = road_l + (road_r - road_l) * (i + 1) / (nl + 2) if i < nl else None
        if X is None:
            break
        col = yellow if rng.random() < 0.15 else white
        dash, gap, off = rng.uniform(1.0, 3.0), rng.uniform(1.0, 4.0), rng.uniform(0, 3)
        z = 0.8 * cam.z0 + off
        while z < 150:
            z2 = z + dash
            a, b = cam.ground(X - 0.06, z), cam.ground(X + 0.06, z)
            c, d = cam.ground(X + 0.06, z2), cam.ground(X - 0.06, z2)
            cv.poly([a, b, c, d], ROAD, col)
            z = z2 + gap
    for X in (road_l + 0.15, road_r - 0.15):
        if rng.random() < 0.5:
            a, b = cam.ground(X - 0.05, zn), cam.ground(X + 0.05, zn)
            c, d = cam.ground(X + 0.05, zf), cam.ground(X - 0.05, zf)
            cv.poly([a, b, c, d], ROAD, white * 0.95)
    if rng.random() < 0.25:  # zebra crossing
        z0 = rng.uniform(2.0, 10.0) * cam.z0
        n = int((road_r - road_l) / 0.5)
        for k in range(n):
            X0 = road_l + k * 0.5 + 0.1
            a, b = cam.ground(X0, z0), cam.ground(X0 + 0.25, z0)
            c, d = cam.ground(X0 + 0.25, z0 + 1.5), cam.ground(X0, z0 + 1.5)
            cv.poly([a, b, c, d], ROAD, white)
    return road_l, road_r, sides


def facades(rng, cv, cam, side, X0):
    """Roadside planes at lateral offset X0: buildings, walls, fences, hedges, gaps."""
    sgn = -1 if side == "l" else 1
    z = 0.5
    items = []
    while z < 120:
        kind = rng.choice(["building"] * 6 + ["wall", "fence", "veg", "gap"])
        length = rng.uniform(3, 14) if kind == "building" else rng.uniform(2, 8)
        items.append((kind, z, z + length))
        z += length
    for kind, za, zb in reversed(items):
        X = X0 + sgn * (rng.uniform(0, 1.5) if kind == "building" else rng.uniform(0, 0.4))
        if kind == "gap":
            continue
        if kind == "building":
            hgt = rng.uniform(2.5, 14)
            base = _col(rng, rng.choice([(0.55, 0.5, 0.45), (0.7, 0.68, 0.62), (0.45, 0.35, 0.3),
                                         (0.6, 0.6, 0.62), (0.8, 0.75, 0.6), (0.35, 0.37, 0.4)]), 0.08)
            cls = BUILDING
        elif kind == "wall":
            hgt = rng.uniform(0.4, 1.8)
            base = _col(rng, (0.6, 0.58, 0.55), 0.1)
            cls = WALL
        elif kind == "fence":
            hgt = rng.uniform(0.5, 1.4)
            base = _col(rng, rng.choice([(0.4, 0.35, 0.3), (0.55, 0.55, 0.55), (0.2, 0.3, 0.2)]), 0.06)
            cls = FENCE
        else:
            hgt = rng.uniform(0.6, 5.0)
            base = _col(rng, (0.2, 0.35, 0.12), 0.07)
            cls = VEG
        za_c = max(za, 0.3)
        pa, pb = cam.point(X, 0, za_c), cam.point(X, 0, zb)
        ta, tb = cam.point(X, hgt, za_c), cam.point(X, hgt, zb)
        if cls == FENCE:
            # posts and rails; the background stays visible through the gaps
            npost = max(2, int((zb - za) / 1.2))
            for k in range(npost + 1):
                zz = max(za_c, za + (zb - za) * k / npost)
                p, t = cam.point(X, 0, zz), cam.point(X, hgt, zz)
                cv.line(p[0], p[1], t[0], t[1], max(1, cam.scale(zz) * 0.06), FENCE, base)
            for r in np.linspace(0.25, 1.0, rng.integers(2, 5)):
                a, b = cam.point(X, hgt * r, za_c), cam.point(X, hgt * r, zb)
                cv.line(a[0], a[1], b[0], b[1], max(1, cam.scale(za_c) * 0.04), FENCE, base * 1.1)
            if rng.random() < 0.5:  # mesh
                for k in range(int((zb - za) / 0.3)):
                    zz = max(za_c, za + k * 0.3)
                    p, t = cam.point(X, 0, zz), cam.point(X, hgt, min(zz + 0.3, zb))
                    cv.line(p[0], p[1], t[0], t[1], 1, FENCE, base)
            continue
        if cls == VEG:
            pts = [pa]
            n = 12
            for k in range(n + 1):
                zz = za_c + (zb - za_c) * k / n
                pts.append(cam.point(X, hgt * rng.uniform(0.7, 1.15), zz))
            pts.append(pb)
            cv.poly(pts, VEG, base)
            continue
        cv.poly([pa, pb, tb, ta], cls, base)
        if cls == BUILDING:
            # side wall towards the street when set back
            if rng.random() < 0.5:
                q = cam.point(X - sgn * 0.8, 0, za_c), cam.point(X - sgn * 0.8, hgt, za_c)
                cv.poly([pa, q[0], q[1], ta], BUILDING, base * 0.8)
            # windows on a facade grid
            fl = rng.uniform(0.9, 1.4)
            wdx = rng.uniform(1.0, 2.0)
            wcol = _col(rng, rng.choice([(0.15, 0.18, 0.22), (0.35, 0.45, 0.55), (0.8, 0.75, 0.5)]), 0.05)
            frame = rng.random() < 0.5
            y = rng.uniform(0.8, 1.5)
            while y + fl * 0.6 < hgt:
                zz = za + 0.3
                while zz + wdx * 0.5 < zb:
                    z0, z1 = max(zz, 0.31), zz + wdx * 0.55
                    if z1 > z0 and cam.scale(z1) * 0.2 > 0.7:
                        q = [cam.point(X - sgn * 0.01, y, z0), cam.point(X - sgn * 0.01, y, z1),
                             cam.point(X - sgn * 0.01, y + fl * 0.6, z1), cam.point(X - sgn * 0.01, y + fl * 0.6, z0)]
                        cv.poly(q, BUILDING, wcol * rng.uniform(0.8, 1.2))
                        if frame:
                            cv.line(q[0][0], q[0][1], q[1][0], q[1][1], 1, BUILDING, base * 1.2)
                    zz += wdx
                y += fl
            # ground floor shop window / door
            if rng.random() < 0.5:
                z0 = max(za + 0.5, 0.31)
                z1 = min(zb - 0.5, z0 + rng.uniform(1, 4))
                if z1 > z0:
                    q = [cam.point(X - sgn * 0.01, 0.05, z0), cam.point(X - sgn * 0.01, 0.05, z1),
                         cam.point(X - sgn * 0.01, 0.7, z1), cam.point(X - sgn * 0.01, 0.7, z0)]
                    cv.poly(q, BUILDING, _col(rng, (0.2, 0.22, 0.25), 0.05))


def skyline(rng, cv, cam):
    x = -10.0
    while x < cv.w + 10:
        bw = rng.uniform(0.04, 0.15) * cv.w
        bh = rng.uniform(0.0, 0.25) * cam.yh
        if rng.random() < 0.8:
            cv.rect(x, cam.yh - bh, x + bw, cam.yh + 1, BUILDING, _col(rng, (0.55, 0.55, 0.58), 0.1))
        elif rng.random() < 0.5:
            cv.ellipse(x + bw / 2, cam.yh, bw / 2, bh * 0.6 + 2, VEG, _col(rng, (0.2, 0.33, 0.15), 0.05))
        x += bw


# ----------------------------------------------------------------------------- objects

def tree(rng, cv, cam, X, z):
    s = cam.scale(z)
    th = rng.uniform(1.2, 3.0)
    gx, gy = cam.ground(X, z)
    tx, ty = cam.point(X, th, z)
    trunk = _col(rng, (0.3, 0.22, 0.15), 0.05)
    cv.line(gx, gy, tx, ty, max(1, 0.12 * s), VEG, trunk)
    crown = _col(rng, (0.2, 0.38, 0.12), 0.08)
    r = rng.uniform(0.8, 2.2) * s
    for _ in range(rng.integers(3, 7)):
        cv.ellipse(tx + rng.normal(0, 0.35) * r, ty - rng.uniform(0, 0.8) * r,
                   r * rng.uniform(0.4, 0.8), r * rng.uniform(0.35, 0.7), VEG, crown * rng.uniform(0.8, 1.2))


def pole(rng, cv, cam, X, z):
    s = cam.scale(z)
    ph = rng.uniform(2.0, 5.5)
    gx, gy = cam.ground(X, z)
    tx, ty = cam.point(X, ph, z)
    pc = _col(rng, (0.45, 0.45, 0.45), 0.1)
    cv.line(gx, gy, tx, ty, max(1, 0.07 * s), POLE, pc)
    r = rng.random()
    if r < 0.35:  # traffic sign
        sz = 0.35 * s
        col = _col(rng, rng.choice([(0.8, 0.1, 0.1), (0.1, 0.25, 0.7), (0.9, 0.8, 0.1), (0.95, 0.95, 0.95)]), 0.05)
        shape = rng.integers(0, 3)
        if shape == 0:
            cv.ellipse(tx, ty, sz, sz, SIGN, col)
            cv.ellipse(tx, ty, sz * 0.7, sz * 0.7, SIGN, (0.95, 0.95, 0.95))
        elif shape == 1:
            cv.poly([(tx, ty - sz), (tx + sz, ty + sz * 0.8), (tx - sz, ty + sz * 0.8)], SIGN, col)
        else:
            cv.rect(tx - sz, ty - sz * 0.7, tx + sz, ty + sz * 0.7, SIGN, col)
    elif r < 0.65:  # traffic light
        bw, bh = 0.22 * s, 0.65 * s
        cv.rect(tx - bw, ty - bh, tx + bw, ty + bh * 0.3, LIGHT, _col(rng, (0.12, 0.12, 0.1), 0.03))
        on = rng.integers(0, 3)
        for k, c in enumerate([(1.0, 0.15, 0.1), (1.0, 0.75, 0.1), (0.1, 0.9, 0.3)]):
            cc = np.array(c, np.float32) * (1.0 if k == on else 0.25)
            cv.ellipse(tx, ty - bh + (k + 0.6) * bh * 0.4, bw * 0.6, bw * 0.6, LIGHT, cc)
    elif r < 0.85:  # street lamp arm (pole)
        ax, ay = cam.point(X - np.sign(X) * 1.0, ph, z)
        cv.line(tx, ty, ax, ay, max(1, 0.05 * s), POLE, pc)
        cv.ellipse(ax, ay + 0.05 * s, 0.2 * s, 0.06 * s, POLE, pc * 0.8)


def person(rng, cv, cam, X, z, cls=PERSON, base_h=0.0, riding=False):
    s = cam.scale(z)
    hgt = rng.uniform(1.0, 1.25) * (0.75 if riding else 1.0)
    gx, gy = cam.point(X, base_h, z)
    skin = _col(rng, rng.choice([(0.85, 0.65, 0.5), (0.55, 0.38, 0.25), (0.95, 0.8, 0.7)]), 0.04)
    shirt = _col(rng, (rng.random(), rng.random(), rng.random()), 0.0) * 0.8
    pants = _col(rng, rng.choice([(0.15, 0.15, 0.25), (0.3, 0.3, 0.3), (0.4, 0.3, 0.2)]), 0.05)
    u = hgt * s
    w = 0.17 * u
    if not riding:
        step = rng.uniform(-0.12, 0.12) * u
        cv.line(gx - w * 0.3, gy - 0.48 * u, gx - w * 0.3 - step, gy, max(1, 0.09 * u), cls, pants)
        cv.line(gx + w * 0.3, gy - 0.48 * u, gx + w * 0.3 + step, gy, max(1, 0.09 * u), cls, pants)
        top = gy - 0.48 * u
    else:
        top = gy
        cv.line(gx, gy, gx + 0.25 * u * rng.choice([-1, 1]), gy + 0.3 * u, max(1, 0.09 * u), cls, pants)
    cv.poly([(gx - w, top), (gx + w, top), (gx + w * 1.1, top - 0.38 * u), (gx - w * 1.1, top - 0.38 * u)], cls, shirt)
    cv.line(gx - w * 1.05, top - 0.36 * u, gx - w * 1.3, top - 0.05 * u, max(1, 0.06 * u), cls, shirt)
    cv.line(gx + w * 1.05, top - 0.36 * u, gx + w * 1.3, top - 0.05 * u, max(1, 0.06 * u), cls, shirt)
    cv.ellipse(gx, top - 0.38 * u - 0.09 * u, 0.08 * u, 0.1 * u, cls, skin)
    if rng.random() < 0.3:
        cv.ellipse(gx, top - 0.38 * u - 0.15 * u, 0.085 * u, 0.05 * u, cls, pants)


def two_wheeler(rng, cv, cam, X, z, cls):
    s = cam.scale(z)
    d = rng.choice([-1, 1])
    gx, gy = cam.ground(X, z)
    L = (0.75 if cls == BIKE else 0.95) * s
    r = (0.22 if cls == BIKE else 0.25) * s
    col = _col(rng, (rng.random(), rng.random(), rng.random()), 0.0) * 0.7
    tyre = (0.08, 0.08, 0.08)
    if rng.random() < 0.6:  # side view
        c1, c2 = (gx - d * L / 2, gy - r), (gx + d * L / 2, gy - r)
        cv.ring(c1[0], c1[1], r, max(1, 0.05 * s), cls, tyre)
        cv.ring(c2[0], c2[1], r, max(1, 0.05 * s), cls, tyre)
        if cls == BIKE:
            seat = (gx - d * L * 0.1, gy - 2.3 * r)
            bar = (gx + d * L * 0.35, gy - 2.6 * r)
            for a, b in ((c1, seat), (seat, bar), (bar, c2), (c1, (gx, gy - r)), ((gx, gy - r), seat), ((gx, gy - r), bar)):
                cv.line(a[0], a[1], b[0], b[1], max(1, 0.03 * s), cls, col)
        else:
            cv.poly([(c1[0], c1[1] - r * 0.3), (c2[0], c2[1] - r * 0.3), (c2[0] - d * r, gy - 3 * r),
                     (c1[0] + d * r * 0.5, gy - 2.8 * r)], cls, col)
        top = gy - 2.4 * r
    else:  # back view
        cv.rect(gx - 0.05 * s, gy - 2 * r, gx + 0.05 * s, gy, cls, tyre)
        cv.rect(gx - 0.25 * s, gy - 2.6 * r, gx + 0.25 * s, gy - 2.3 * r, cls, col)
        top = gy - 2.4 * r
    if rng.random() < 0.85 or cls == MOTO:
        hb = (gy - top) / s
        person(rng, cv, cam, X, z, cls=RIDER, base_h=hb, riding=True)


def vehicle(rng, cv, cam, X, z, cls, side_view):
    s = cam.scale(z)
    dims = {CAR: (1.2, 0.95, 2.9), TRUCK: (1.6, 2.2, 5.0), BUS: (1.7, 2.1, 8.0), TRAIN: (1.7, 2.3, 14.0)}
    W, Hh, L = dims[cls]
    W *= rng.uniform(0.9, 1.1); Hh *= rng.uniform(0.85, 1.15); L *= rng.uniform(0.85, 1.1)
    body = _col(rng, rng.choice([(0.8, 0.8, 0.8), (0.1, 0.1, 0.12), (0.6, 0.1, 0.1), (0.2, 0.3, 0.6),
                                 (0.5, 0.5, 0.52), (0.9, 0.9, 0.85), (0.7, 0.6, 0.2)]), 0.05)
    glass = _col(rng, (0.12, 0.15, 0.2), 0.04)
    tyre = (0.05, 0.05, 0.05)
    if side_view:
        d = 1 if X > 0 else -1
        za, zb = z, z + L
        sgn = 1 if X > 0 else -1
        # the visible side is the one facing the camera axis
        P = lambda y, zz: cam.point(X - sgn * W / 2, y, zz)
        roof = Hh if cls != CAR else Hh
        if cls == CAR:
            cv.poly([P(0.18, za), P(0.18, zb), P(0.55, zb), P(0.6, zb - 0.6), P(roof, zb - 1.0),
                     P(roof, za + 0.8), P(0.6, za + 0.3), P(0.55, za)], cls, body)
            cv.poly([P(0.62, za + 0.55), P(roof - 0.05, za + 0.9), P(roof - 0.05, zb - 1.1), P(0.62, zb - 0.7)], cls, glass)
        else:
            cv.poly([P(0.15, za), P(0.15, zb), P(Hh, zb), P(Hh, za)], cls, body)
            nwin = int(L / 1.3)
            for k in range(nwin):
                z0 = za + 0.3 + k * 1.3
                cv.poly([P(Hh * 0.55, z0), P(Hh * 0.55, z0 + 1.0), P(Hh * 0.9, z0 + 1.0), P(Hh * 0.9, z0)], cls, glass)
        for zz in (za + 0.6, zb - 0.6) if cls != TRAIN else (za + 1.5, za + 3, zb - 3, zb - 1.5):
            if zz > 0.3:
                c = P(0.17, zz)
                cv.ellipse(c[0], c[1], 0.18 * cam.scale(zz), 0.18 * cam.scale(zz), cls, tyre)
        # front/back face towards camera
        if za > 0.3:
            q = [cam.point(X - W / 2, 0.15, za), cam.point(X + W / 2, 0.15, za),
                 cam.point(X + W / 2, Hh * (0.6 if cls == CAR else 1), za), cam.point(X - W / 2, Hh * (0.6 if cls == CAR else 1), za)]
            cv.poly(q, cls, body * 0.85)
        return
    gx, gy = cam.ground(X, z)
    w, hh = W * s, Hh * s
    x0 = gx - w / 2
    cv.ellipse(x0 + 0.12 * w, gy - 0.05 * hh, 0.09 * w, 0.1 * hh, cls, tyre)
    cv.ellipse(x0 + 0.88 * w, gy - 0.05 * hh, 0.09 * w, 0.1 * hh, cls, tyre)
    if cls == CAR:
        cv.poly([(x0, gy - 0.12 * hh), (x0 + w, gy - 0.12 * hh), (x0 + w, gy - 0.6 * hh), (x0 + 0.85 * w, gy - hh),
                 (x0 + 0.15 * w, gy - hh), (x0, gy - 0.6 * hh)], cls, body)
        cv.poly([(x0 + 0.08 * w, gy - 0.62 * hh), (x0 + 0.92 * w, gy - 0.62 * hh), (x0 + 0.8 * w, gy - 0.93 * hh),
                 (x0 + 0.2 * w, gy - 0.93 * hh)], cls, glass)
    else:
        cv.rect(x0, gy - hh, x0 + w, gy - 0.1 * hh, cls, body)
        cv.rect(x0 + 0.08 * w, gy - 0.92 * hh, x0 + 0.92 * w, gy - 0.6 * hh, cls, glass if cls == BUS else body * 0.8)
    red = (0.85, 0.1, 0.08)
    cv.rect(x0 + 0.03 * w, gy - 0.45 * hh, x0 + 0.15 * w, gy - 0.36 * hh, cls, red)
    cv.rect(x0 + 0.85 * w, gy - 0.45 * hh, x0 + 0.97 * w, gy - 0.36 * hh, cls, red)
    cv.rect(x0 + 0.38 * w, gy - 0.3 * hh, x0 + 0.62 * w, gy - 0.2 * hh, cls, (0.9, 0.9, 0.85))


TRAM_LIVERIES = [((0.95, 0.8, 0.1), (0.9, 0.9, 0.88)), ((0.9, 0.9, 0.88), (0.75, 0.1, 0.1)),
                 ((0.85, 0.15, 0.12), (0.92, 0.92, 0.9)), ((0.15, 0.35, 0.7), (0.92, 0.92, 0.9)),
                 ((0.92, 0.92, 0.9), (0.1, 0.5, 0.3)), ((0.3, 0.32, 0.35), (0.95, 0.55, 0.1))]


def tram_track(rng, cv, cam, X):
    """Grooved rails set in the road along the lane at lateral offset X, from the bottom
    row to the horizon (labelled road, as Cityscapes labels rails in the road), and the
    overhead contact wire above them (image only). Painted before the traffic."""
    steel = _col(rng, (0.6, 0.6, 0.62), 0.05)
    groove = (0.08, 0.08, 0.08)
    for x in (X - 0.48, X + 0.48):
        for off, hw, col in ((-0.045, 0.02, groove), (0.0, 0.025, steel)):
            a, b = x + off - hw, x + off + hw
            cv.poly([cam.ground(a, 0.8), cam.ground(b, 0.8), cam.ground(b, 150.0), cam.ground(a, 150.0)], ROAD, col)
    p, q = cam.point(X, 3.6, 1.2), cam.point(X, 3.6, 150.0)
    cv.line(p[0], p[1], q[0], q[1], 1, None, (0.1, 0.1, 0.1))


def tram(rng, cv, cam, X, z):
    """An articulated low-floor tram in the lane at lateral offset X, nearest face at
    depth z: the long side facing the camera axis (window band, doors, livery stripe,
    dark joints between the sections), the near face (windscreen, destination display,
    headlights) and a pantograph on the roof. What the generator's earlier train (a long
    box like its bus) lacked: the cues that tell a tram from a truck or a bus."""
    W, Hh = 1.65 * rng.uniform(0.95, 1.05), 2.2 * rng.uniform(0.95, 1.05)
    nsec = int(rng.integers(3, 6))
    sec = rng.uniform(3.2, 4.2)
    L = nsec * sec
    body, stripe = (np.asarray(c, np.float32) for c in TRAM_LIVERIES[rng.integers(len(TRAM_LIVERIES))])
    body = np.clip(body + rng.uniform(-0.05, 0.05, 3).astype(np.float32), 0, 1)
    glass = _col(rng, (0.1, 0.13, 0.17), 0.03)
    dark = (0.12, 0.12, 0.13)
    sgn = 1 if X > 0 else -1
    za, zb = z, z + L
    P = lambda y, zz: cam.point(X - sgn * W / 2, y, zz)
    y0 = 0.1  # skirt: low floor, wheels hidden
    cv.poly([P(y0, za), P(y0, zb), P(Hh, zb), P(Hh, za)], TRAIN, body)
    cv.poly([P(0.3 * Hh, za), P(0.3 * Hh, zb), P(0.37 * Hh, zb), P(0.37 * Hh, za)], TRAIN, stripe)
    cv.poly([P(0.45 * Hh, za + 0.3), P(0.45 * Hh, zb - 0.3), P(0.86 * Hh, zb - 0.3), P(0.86 * Hh, za + 0.3)], TRAIN, glass)
    for k in range(nsec):
        s0 = za + k * sec
        if k:  # the joint between two sections
            cv.poly([P(y0, s0 - 0.12), P(y0, s0 + 0.12), P(Hh, s0 + 0.12), P(Hh, s0 - 0.12)], TRAIN, dark)
        for pz in np.arange(s0 + 0.9, s0 + sec - 0.3, 1.1):  # window pillars
            cv.poly([P(0.45 * Hh, pz), P(0.45 * Hh, pz + 0.08), P(0.86 * Hh, pz + 0.08), P(0.86 * Hh, pz)], TRAIN, body)
        d0 = s0 + sec * rng.uniform(0.3, 0.5)  # a double door
        cv.poly([P(y0 + 0.05, d0), P(y0 + 0.05, d0 + 0.9), P(0.88 * Hh, d0 + 0.9), P(0.88 * Hh, d0)], TRAIN, glass * 1.3)
        cv.line(*P(y0 + 0.05, d0 + 0.45), *P(0.88 * Hh, d0 + 0.45), max(1, 0.03 * cam.scale(d0)), TRAIN, dark)
    # roof equipment and the pantograph above the middle section
    cv.poly([P(Hh, za + 0.5), P(Hh, zb - 0.5), P(Hh * 1.06, zb - 0.5), P(Hh * 1.06, za + 0.5)], TRAIN,
            _col(rng, (0.55, 0.56, 0.58), 0.05))
    pm = za + sec * (nsec // 2 + 0.5)
    yb, yt = Hh * 1.06, 3.6
    Q = lambda y, zz: cam.point(X, y, zz)
    knee = (yb + yt) / 2
    th = max(1, 0.025 * cam.scale(pm))
    for a, b in ((Q(yb, pm - 0.6), Q(knee, pm + 0.2)), (Q(knee, pm + 0.2), Q(yt, pm - 0.3)),
                 (Q(yt, pm - 0.6), Q(yt, pm + 0.1))):
        cv.line(a[0], a[1], b[0], b[1], th, TRAIN, dark)
    if za > 0.3:  # the near face
        q = lambda x, y: cam.point(X + x * W / 2, y, za)
        cv.poly([q(-1, y0), q(1, y0), q(1, 0.92 * Hh), q(0.8, Hh), q(-0.8, Hh), q(-1, 0.92 * Hh)], TRAIN, body * 0.92)
        cv.poly([q(-1, 0.3 * Hh), q(1, 0.3 * Hh), q(1, 0.37 * Hh), q(-1, 0.37 * Hh)], TRAIN, stripe)
        cv.poly([q(-0.85, 0.42 * Hh), q(0.85, 0.42 * Hh), q(0.8, 0.82 * Hh), q(-0.8, 0.82 * Hh)], TRAIN, glass)
        cv.poly([q(-0.55, 0.85 * Hh), q(0.55, 0.85 * Hh), q(0.55, 0.95 * Hh), q(-0.55, 0.95 * Hh)], TRAIN, dark)
        cv.poly([q(-0.5, 0.88 * Hh), q(0.2, 0.88 * Hh), q(0.2, 0.92 * Hh), q(-0.5, 0.92 * Hh)], TRAIN, (1.0, 0.6, 0.1))
        lamp = (1.0, 0.97, 0.85)
        for x in (-0.75, 0.75):
            c = q(x, 0.2 * Hh)
            cv.ellipse(c[0], c[1], 0.06 * cam.scale(za), 0.04 * cam.scale(za), TRAIN, lamp)


# ----------------------------------------------------------------------------- scene

def render(seed, width=384, height=192, rare=False, trams=False, look="v1"):
    """One scene: (image float32 [h,w,3] in [0,1], train-id labels uint8 [h,w]).

    rare=True draws the road traffic from a mix that favours the classes the default mix
    almost never shows (train, motorcycle, bicycle and their riders: under 0.1 % of its
    labelled pixels each), two to five of them and nearer the camera. rare=False makes the
    same random draws as before rare existed, so it renders exactly the scenes it always
    did (the held-out split and the cached pools stay valid).

    trams=True paints every train as a tram on rails in the road (`tram`, `tram_track`)
    instead of the box of the default look; trams=False changes nothing.

    look="real" (issue 19) draws the scene from its own random stream (so its seeds are a
    separate set of scenes) and varies what the v1 look fixes: the camera's height (1 to 8
    car-camera heights: a car, a bus, a pole or a first-floor window), its pitch (horizon
    from mid-frame to above the frame) and its focal length (wide to tele: close-ups);
    wide lawns and squares; grey asphalt; more people; fine-grained grass and paving;
    rarely a train. The label conventions are those of v1."""
    if look not in ("v1", "real"):
        raise ValueError(f"look {look!r}: expected v1 or real")
    real = look == "real"
    rng = np.random.default_rng([seed, 19] if real else seed)
    cv = Canvas(width, height)
    if real:
        H = 1.0 if rng.random() < 0.35 else float(np.exp(rng.uniform(np.log(1.5), np.log(8.0))))
        yh = height * (rng.uniform(0.3, 0.5) if H == 1.0 else rng.uniform(-0.4, 0.4))
        xv = width * rng.uniform(0.2, 0.8)
        F = (height - yh) * float(np.exp(rng.uniform(np.log(0.5), np.log(4.0)))) / H
        cam = Camera(width, height, yh, xv, H=H, F=max(F, 0.25 * width))
    else:
        yh = height * rng.uniform(0.32, 0.5)
        xv = width * rng.uniform(0.3, 0.7)
        cam = Camera(width, height, yh, xv)
    weather = rng.choice(WEATHERS, p=[0.45, 0.35, 0.08, 0.07, 0.05] if real else [0.4, 0.25, 0.1, 0.1, 0.15])
    sky(rng, cv, cam, weather)
    skyline(rng, cv, cam)
    road_l, road_r, sides = ground_and_road(rng, cv, cam, real)
    for side in ("l", "r"):
        facades(rng, cv, cam, side, sides[side])
    # objects: (z, painter)
    objs = []
    for side, edge, outer in (("l", road_l, sides["l"]), ("r", road_r, sides["r"])):
        for _ in range(rng.integers(0, 6)):
            z = rng.uniform(1.5, 40)
            X = edge + (outer - edge) * rng.uniform(0.4, 0.9)
            objs.append((z, "pole", X))
        for _ in range(rng.integers(0, 5)):
            z = rng.uniform(1.5, 40)
            X = edge + (outer - edge) * rng.uniform(0.5, 1.0)
            objs.append((z, "tree", X))
        for _ in range(rng.integers(0, 5)):
            z = rng.uniform(1.2, 35)
            X = edge + (outer - edge) * rng.uniform(0.1, 0.9)
            objs.append((z, "person", X))
        if rng.random() < 0.6:  # parked cars along the edge, side view
            z = rng.uniform(1.5, 6)
            for _ in range(rng.integers(1, 5)):
                X = edge - np.sign(edge) * 0.7
                objs.append((z, "parked", X))
                z += rng.uniform(3.5, 9)
    for _ in range(rng.integers(2, 6) if rare else rng.integers(0, 7)):
        z = rng.uniform(1.6, 25 if rare else 60)
        X = rng.uniform(road_l + 0.6, road_r - 0.6)
        kind = rng.choice(["car"] * 6 + ["truck", "bus", "moto", "bike", "train"],
                          p=[0.03] * 6 + [0.04, 0.04, 0.3, 0.2, 0.24] if rare else
                          [0.1] * 6 + [0.1, 0.1, 0.08, 0.1, 0.02])
        if rare and kind in ("moto", "bike"):
            z = rng.uniform(1.6, 6)  # two-wheelers are small: near ones
        objs.append((z, kind, X))
    for _ in range(rng.integers(0, 3)):
        objs.append((rng.uniform(1.5, 15), rng.choice(["bike", "person"]), rng.uniform(road_l, road_r)))
    if real:
        # more people, near and far, on every surface; depths from the bottom row on
        for _ in range(rng.integers(0, 9)):
            objs.append((rng.uniform(1.0, 25), "person", rng.uniform(sides["l"], sides["r"])))
        zs = max(1.0, cam.z0 / 3.0)
        objs = [(cam.z0 + (z - 1.0) * zs, "car" if kind == "train" and rng.random() < 0.8 else kind, X)
                for z, kind, X in objs]
    objs.sort(key=lambda o: -o[0])
    if trams:
        for z, kind, X in objs:
            if kind == "train":
                tram_track(rng, cv, cam, X)
    for z, kind, X in objs:
        if kind == "pole":
            pole(rng, cv, cam, X, z)
        elif kind == "tree":
            tree(rng, cv, cam, X, z)
        elif kind == "person":
            person(rng, cv, cam, X, z)
        elif kind == "parked":
            vehicle(rng, cv, cam, X, z, CAR, side_view=True)
        elif kind == "car":
            vehicle(rng, cv, cam, X, z, CAR, side_view=rng.random() < 0.15)
        elif kind == "truck":
            vehicle(rng, cv, cam, X, z, TRUCK, side_view=rng.random() < 0.3)
        elif kind == "bus":
            vehicle(rng, cv, cam, X, z, BUS, side_view=rng.random() < 0.4)
        elif kind == "train" and trams:
            tram(rng, cv, cam, X, z)
        elif kind == "train":
            vehicle(rng, cv, cam, X, z, TRAIN, side_view=True)
        elif kind == "moto":
            two_wheeler(rng, cv, cam, X, z, MOTO)
        elif kind == "bike":
            two_wheeler(rng, cv, cam, X, z, BIKE)
    img, lab = cv.img, cv.lab
    h, w = height, width
    # textures: per-class multiplicative fractal noise + fine grain
    f1 = fractal(rng, h, w, base=6, octaves=5)
    f2 = rng.standard_normal((h, w)).astype(np.float32)
    f2 = cv2.GaussianBlur(f2, (0, 0), 0.7)
    tex, grain = TEX_AMP, GRAIN_AMP
    if real:  # grass blades and asphalt grain, each scene its own strength
        tex = TEX_AMP * rng.uniform(0.5, 1.5)
        grain = REAL_GRAIN_AMP * rng.uniform(0.5, 1.5)
    img = img * (1.0 + tex[lab][..., None] * f1[..., None] * 2.0 + grain[lab][..., None] * f2[..., None])
    # shadows: a few dark polygons on the lower half
    for _ in range(rng.integers(0, 3)):
        x0 = rng.uniform(-0.2, 1.0) * w
        pts = np.array([(x0, h), (x0 + rng.uniform(0.1, 0.6) * w, h), (xv + rng.uniform(-20, 20), yh + rng.uniform(2, 30)),
                        (xv + rng.uniform(-40, 0), yh + rng.uniform(2, 30))])
        m = np.zeros((h, w), np.float32)
        cv2.fillPoly(m, [np.round(pts * SC).astype(np.int32)], 1.0, cv2.LINE_AA, SHIFT)
        m = cv2.GaussianBlur(m, (0, 0), 2.0)
        img = img * (1 - rng.uniform(0.2, 0.5) * m[..., None] * (lab != SKY)[..., None])
    # lighting and weather
    rows = np.arange(h, dtype=np.float32)[:, None]
    depth = np.where(rows > yh + 0.5, (h - yh) / np.maximum(rows - yh, 0.5), 25.0)
    if weather == "fog":
        fogc = img[0, 0].copy()
        a = 0.8 * (1 - np.exp(-depth / rng.uniform(10, 40)))
        img = img * (1 - a[..., None]) + fogc * a[..., None]
    gain = {"clear": rng.uniform(0.8, 1.2), "overcast": rng.uniform(0.7, 1.0), "dusk": rng.uniform(0.5, 0.8),
            "fog": rng.uniform(0.8, 1.0), "night": rng.uniform(0.25, 0.5)}[weather]
    cast = np.array([1.0, 1.0, 1.0], np.float32) + rng.normal(0, 0.05, 3).astype(np.float32)
    if weather == "dusk":
        cast *= np.array([1.15, 0.95, 0.8], np.float32)
    img = img * gain * cast
    if weather == "night" and rng.random() < 0.7:  # street light glows
        for _ in range(rng.integers(1, 5)):
            cx, cy = rng.uniform(0, w), rng.uniform(0, max(yh, 0.1 * h) * 1.3)
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            img = img + (0.5 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (rng.uniform(5, 40)) ** 2)))[..., None] * np.array([1.0, 0.85, 0.6], np.float32)
    # vignetting and camera gamma
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2
    img = img * (1 - rng.uniform(0, 0.4) * r2)[..., None]
    img = np.clip(img, 0, 1) ** rng.uniform(0.85, 1.15)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.8))
    return np.clip(img, 0, 1).astype(np.float32), lab


if __name__ == "__main__":
    import sys, time
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/scenes.png"
    t = time.time()
    tiles = []
    from cityscapes_labels import CLASSES
    pal = np.array([c[2] for c in CLASSES] + [(0, 0, 0)] * 237, np.uint8)
    for s in range(8):
        im, lb = render(s, 384, 192)
        tiles.append(np.concatenate([(im * 255).astype(np.uint8), pal[lb][..., ::-1][..., ::-1]], 1))
    print("8 scenes in %.2fs" % (time.time() - t))
    grid = np.concatenate(tiles, 0)
    cv2.imwrite(out, grid[..., ::-1])
