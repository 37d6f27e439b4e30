//! The per-frame hot path: conversions between raw frames (packed RGB family,
//! I420, NV12) and planar RGB f32 images, label colouring and logits upsampling.
//!
//! "Planar" means an RGB float32 image `[3, ph, pw]` with values in [0,1], row-major
//! with rows of exactly `pw` floats; the frame occupies the top-left
//! `width`×`height`, with `pw >= width` and `ph >= height`.
//!
//! None of these functions allocates. Rows are walked with fixed-size chunks so that
//! the inner loops carry no bounds checks.

use crate::frame::{FrameLayout, PixelFormat, YuvMatrix};
use crate::preprocess::{AxisMap, Placement};
use crate::{Error, Result};

const INV255: f32 = 1.0 / 255.0;

/// Number of floats a planar image of `pw`×`ph` takes.
pub fn planar_len(pw: usize, ph: usize) -> usize {
    3 * pw * ph
}

/// Checks a planar buffer of `len` floats against `pw`×`ph` and the frame size;
/// returns the size of one plane.
fn check_planar(len: usize, pw: usize, ph: usize, layout: &FrameLayout) -> Result<usize> {
    if pw < layout.width || ph < layout.height {
        return Err(Error::Frame(format!(
            "planar size {pw}x{ph} is smaller than the {}x{} frame",
            layout.width, layout.height
        )));
    }
    let plane = pw
        .checked_mul(ph)
        .filter(|p| p.checked_mul(3).is_some_and(|n| n <= len))
        .ok_or_else(|| Error::Frame(format!("planar buffer of {len} floats is smaller than 3x{ph}x{pw}")))?;
    Ok(plane)
}

/// Rounds to the nearest byte (halves to even), clamping to [0,255]; NaN gives 0.
#[inline(always)]
#[allow(clippy::manual_clamp)]
fn round_u8(x: f32) -> u8 {
    // Adding 2^23 leaves the rounded integer in the low mantissa bits; unlike an
    // `as` cast this vectorizes.
    (x.max(0.0).min(255.0) + 8_388_608.0).to_bits() as u8
}

/// A [0,1] value as a byte.
#[inline(always)]
fn to_u8(v: f32) -> u8 {
    round_u8(v * 255.0)
}

/// Clamps to [0,1]; unlike `f32::clamp`, NaN gives 0.
#[inline(always)]
#[allow(clippy::manual_clamp)]
fn clamp01(v: f32) -> f32 {
    v.max(0.0).min(1.0)
}

/// YUV <-> RGB coefficients for one matrix and range, on the [0,1] RGB scale.
#[derive(Clone, Copy, Debug)]
struct Yuv {
    y_off: f32,
    y_scale: f32,
    c_scale: f32,
    rv: f32,
    gu: f32,
    gv: f32,
    bu: f32,
    kr: f32,
    kg: f32,
    kb: f32,
}

impl Yuv {
    fn new(matrix: YuvMatrix, full_range: bool) -> Yuv {
        let (kr, kb) = match matrix {
            YuvMatrix::Bt601 => (0.299f32, 0.114f32),
            YuvMatrix::Bt709 => (0.2126f32, 0.0722f32),
        };
        let kg = 1.0 - kr - kb;
        let (y_off, y_scale, c_scale) = if full_range {
            (0.0, 255.0, 255.0)
        } else {
            (16.0, 219.0, 224.0)
        };
        Yuv {
            y_off,
            y_scale,
            c_scale,
            rv: 2.0 * (1.0 - kr),
            gu: 2.0 * kb * (1.0 - kb) / kg,
            gv: 2.0 * kr * (1.0 - kr) / kg,
            bu: 2.0 * (1.0 - kb),
            kr,
            kg,
            kb,
        }
    }

    #[inline(always)]
    fn luma(&self, y: u8) -> f32 {
        (f32::from(y) - self.y_off) * (1.0 / self.y_scale)
    }

    /// The (R, G, B) offsets that chroma (u, v) adds to luma.
    #[inline(always)]
    fn chroma(&self, u: u8, v: u8) -> (f32, f32, f32) {
        let cb = (f32::from(u) - 128.0) * (1.0 / self.c_scale);
        let cr = (f32::from(v) - 128.0) * (1.0 / self.c_scale);
        (self.rv * cr, -self.gu * cb - self.gv * cr, self.bu * cb)
    }

    #[inline(always)]
    fn encode_y(&self, r: f32, g: f32, b: f32) -> u8 {
        let l = self.kr * clamp01(r) + self.kg * clamp01(g) + self.kb * clamp01(b);
        round_u8(self.y_off + self.y_scale * l)
    }

    /// (U, V) bytes of an RGB colour already clamped to [0,1].
    #[inline(always)]
    fn encode_uv(&self, r: f32, g: f32, b: f32) -> (u8, u8) {
        let l = self.kr * r + self.kg * g + self.kb * b;
        let cb = (b - l) / self.bu;
        let cr = (r - l) / self.rv;
        (round_u8(128.0 + self.c_scale * cb), round_u8(128.0 + self.c_scale * cr))
    }
}

/// Converts one frame to planar RGB f32; the padding region (columns ≥ width, rows ≥
/// height) is filled by edge replication.
///
/// `dst` must hold at least `3 * pw * ph` floats (only those are written).
pub fn frame_to_planar(src: &[u8], layout: &FrameLayout, dst: &mut [f32], pw: usize, ph: usize) -> Result<()> {
    layout.validate(src.len())?;
    let plane = check_planar(dst.len(), pw, ph, layout)?;
    let (r, rest) = dst.split_at_mut(plane);
    let (g, rest) = rest.split_at_mut(plane);
    let b = &mut rest[..plane];
    let p = Planes { r, g, b, pw };
    match layout.format {
        PixelFormat::Rgb => unpack::<3, 0, 1, 2>(src, layout, p),
        PixelFormat::Bgr => unpack::<3, 2, 1, 0>(src, layout, p),
        PixelFormat::Rgbx | PixelFormat::Rgba => unpack::<4, 0, 1, 2>(src, layout, p),
        PixelFormat::Bgrx | PixelFormat::Bgra => unpack::<4, 2, 1, 0>(src, layout, p),
        PixelFormat::Xrgb | PixelFormat::Argb => unpack::<4, 1, 2, 3>(src, layout, p),
        PixelFormat::Xbgr | PixelFormat::Abgr => unpack::<4, 3, 2, 1>(src, layout, p),
        PixelFormat::I420 => yuv420_to_planar::<false>(src, layout, p),
        PixelFormat::Nv12 => yuv420_to_planar::<true>(src, layout, p),
    }
    let (w, h) = (layout.width, layout.height);
    let (r, rest) = dst.split_at_mut(plane);
    let (g, rest) = rest.split_at_mut(plane);
    for plane in [r, g, &mut rest[..plane]] {
        replicate_edges(plane, pw, ph, w, h);
    }
    Ok(())
}

struct Planes<'a> {
    r: &'a mut [f32],
    g: &'a mut [f32],
    b: &'a mut [f32],
    pw: usize,
}

impl Planes<'_> {
    /// The first `w` floats of row `y` of each plane.
    #[inline(always)]
    fn rows(&mut self, y: usize, w: usize) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let o = y * self.pw;
        (&mut self.r[o..o + w], &mut self.g[o..o + w], &mut self.b[o..o + w])
    }
}

/// Fills columns ≥ w of rows < h with the last column, then rows ≥ h with row h−1.
fn replicate_edges(plane: &mut [f32], pw: usize, ph: usize, w: usize, h: usize) {
    if w < pw {
        for row in plane[..h * pw].chunks_exact_mut(pw) {
            let v = row[w - 1];
            row[w..].fill(v);
        }
    }
    let last = (h - 1) * pw;
    for y in h..ph {
        plane.copy_within(last..last + pw, y * pw);
    }
}

fn unpack<const BPP: usize, const R: usize, const G: usize, const B: usize>(
    src: &[u8],
    layout: &FrameLayout,
    mut p: Planes<'_>,
) {
    let (w, h) = (layout.width, layout.height);
    let (off, stride) = (layout.offsets[0], layout.strides[0]);
    for y in 0..h {
        let start = off + y * stride;
        let (px, _) = src[start..start + w * BPP].as_chunks::<BPP>();
        let (rr, gg, bb) = p.rows(y, w);
        for (((px, r), g), b) in px.iter().zip(rr).zip(gg).zip(bb) {
            *r = f32::from(px[R]) * INV255;
            *g = f32::from(px[G]) * INV255;
            *b = f32::from(px[B]) * INV255;
        }
    }
}

fn yuv420_to_planar<const NV12: bool>(src: &[u8], layout: &FrameLayout, mut p: Planes<'_>) {
    let k = Yuv::new(layout.matrix, layout.full_range);
    let (w, h) = (layout.width, layout.height);
    let cw = w.div_ceil(2);
    for y in 0..h {
        let ys = layout.offsets[0] + y * layout.strides[0];
        let luma = &src[ys..ys + w];
        let cy = y / 2;
        let (r, g, b) = p.rows(y, w);
        if NV12 {
            let s = layout.offsets[1] + cy * layout.strides[1];
            let (uv, _) = src[s..s + 2 * cw].as_chunks::<2>();
            yuv_row(&k, luma, uv.iter().map(|c| (c[0], c[1])), r, g, b);
        } else {
            let us = layout.offsets[1] + cy * layout.strides[1];
            let vs = layout.offsets[2] + cy * layout.strides[2];
            let (u, v) = (&src[us..us + cw], &src[vs..vs + cw]);
            yuv_row(&k, luma, u.iter().copied().zip(v.iter().copied()), r, g, b);
        }
    }
}

/// One row of YUV 4:2:0 to RGB, each chroma sample shared by two columns.
#[inline(always)]
fn yuv_row(k: &Yuv, luma: &[u8], mut uv: impl Iterator<Item = (u8, u8)>, r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    let (lp, lrem) = luma.as_chunks::<2>();
    let (rp, rrem) = r.as_chunks_mut::<2>();
    let (gp, grem) = g.as_chunks_mut::<2>();
    let (bp, brem) = b.as_chunks_mut::<2>();
    for ((((l, r), g), b), (u, v)) in lp.iter().zip(rp).zip(gp).zip(bp).zip(&mut uv) {
        let (dr, dg, db) = k.chroma(u, v);
        for i in 0..2 {
            let y = k.luma(l[i]);
            r[i] = clamp01(y + dr);
            g[i] = clamp01(y + dg);
            b[i] = clamp01(y + db);
        }
    }
    // Odd width: the last column has its own chroma sample.
    if let ([l], [r], [g], [b], Some((u, v))) = (lrem, rrem, grem, brem, uv.next()) {
        let (dr, dg, db) = k.chroma(u, v);
        let y = k.luma(*l);
        *r = clamp01(y + dr);
        *g = clamp01(y + dg);
        *b = clamp01(y + db);
    }
}

/// Writes the top-left width×height of a planar image into a frame of `layout`
/// (clamped to [0,1], rounded). Alpha bytes of formats with alpha are set to 255, x
/// bytes to 255 too. Bytes outside the planes' rows (stride padding) are untouched.
/// YUV chroma is the average of each 2×2 block (of the pixels inside the frame).
pub fn planar_to_frame(src: &[f32], pw: usize, ph: usize, layout: &FrameLayout, dst: &mut [u8]) -> Result<()> {
    layout.validate(dst.len())?;
    let plane = check_planar(src.len(), pw, ph, layout)?;
    let (r, rest) = src.split_at(plane);
    let (g, rest) = rest.split_at(plane);
    let b = &rest[..plane];
    let p = ConstPlanes { r, g, b, pw };
    match layout.format {
        PixelFormat::Rgb => pack::<3, 0, 1, 2, 0>(p, layout, dst),
        PixelFormat::Bgr => pack::<3, 2, 1, 0, 0>(p, layout, dst),
        PixelFormat::Rgbx | PixelFormat::Rgba => pack::<4, 0, 1, 2, 3>(p, layout, dst),
        PixelFormat::Bgrx | PixelFormat::Bgra => pack::<4, 2, 1, 0, 3>(p, layout, dst),
        PixelFormat::Xrgb | PixelFormat::Argb => pack::<4, 1, 2, 3, 0>(p, layout, dst),
        PixelFormat::Xbgr | PixelFormat::Abgr => pack::<4, 3, 2, 1, 0>(p, layout, dst),
        PixelFormat::I420 => planar_to_yuv420::<false>(p, layout, dst)?,
        PixelFormat::Nv12 => planar_to_yuv420::<true>(p, layout, dst)?,
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct ConstPlanes<'a> {
    r: &'a [f32],
    g: &'a [f32],
    b: &'a [f32],
    pw: usize,
}

impl<'a> ConstPlanes<'a> {
    #[inline(always)]
    fn rows(&self, y: usize, w: usize) -> (&'a [f32], &'a [f32], &'a [f32]) {
        let o = y * self.pw;
        (&self.r[o..o + w], &self.g[o..o + w], &self.b[o..o + w])
    }
}

/// `X` is the index of the x/alpha byte (ignored when `BPP` is 3).
fn pack<const BPP: usize, const R: usize, const G: usize, const B: usize, const X: usize>(
    p: ConstPlanes<'_>,
    layout: &FrameLayout,
    dst: &mut [u8],
) {
    let (w, h) = (layout.width, layout.height);
    let (off, stride) = (layout.offsets[0], layout.strides[0]);
    for y in 0..h {
        let start = off + y * stride;
        let (px, _) = dst[start..start + w * BPP].as_chunks_mut::<BPP>();
        let (rr, gg, bb) = p.rows(y, w);
        for (((px, &r), &g), &b) in px.iter_mut().zip(rr).zip(gg).zip(bb) {
            px[R] = to_u8(r);
            px[G] = to_u8(g);
            px[B] = to_u8(b);
            if BPP == 4 {
                px[X] = 255;
            }
        }
    }
}

/// Byte range of plane `plane`'s row `row`, `len` bytes long.
#[inline(always)]
fn row_range(layout: &FrameLayout, plane: usize, row: usize, len: usize) -> std::ops::Range<usize> {
    let s = layout.offsets[plane] + row * layout.strides[plane];
    s..s + len
}

fn planar_to_yuv420<const NV12: bool>(p: ConstPlanes<'_>, layout: &FrameLayout, dst: &mut [u8]) -> Result<()> {
    let k = Yuv::new(layout.matrix, layout.full_range);
    let (w, h) = (layout.width, layout.height);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    if !NV12 {
        // U and V rows are written together, so the two planes must not overlap.
        let (u0, v0) = (layout.offsets[1], layout.offsets[2]);
        let u_end = row_range(layout, 1, ch - 1, cw).end;
        let v_end = row_range(layout, 2, ch - 1, cw).end;
        if u0 < v_end && v0 < u_end {
            return Err(Error::Frame("I420 layout: the U and V planes overlap".into()));
        }
    }
    for y in 0..h {
        let row = &mut dst[row_range(layout, 0, y, w)];
        let (r, g, b) = p.rows(y, w);
        for (((o, &r), &g), &b) in row.iter_mut().zip(r).zip(g).zip(b) {
            *o = k.encode_y(r, g, b);
        }
    }
    for cy in 0..ch {
        let y0 = 2 * cy;
        let y1 = (y0 + 1).min(h - 1);
        let (r0, g0, b0) = p.rows(y0, w);
        let (r1, g1, b1) = p.rows(y1, w);
        if NV12 {
            let (uv, _) = dst[row_range(layout, 1, cy, 2 * cw)].as_chunks_mut::<2>();
            let mut out = uv.iter_mut();
            for_each_block_mean([r0, r1, g0, g1, b0, b1], |r, g, b| {
                if let Some(o) = out.next() {
                    let (u, v) = k.encode_uv(r, g, b);
                    *o = [u, v];
                }
            });
        } else {
            let ur = row_range(layout, 1, cy, cw);
            let vr = row_range(layout, 2, cy, cw);
            let (u, v) = if ur.start < vr.start {
                let (a, b) = dst.split_at_mut(vr.start);
                (&mut a[ur], &mut b[..cw])
            } else {
                let (a, b) = dst.split_at_mut(ur.start);
                (&mut b[..cw], &mut a[vr])
            };
            let mut out = u.iter_mut().zip(v.iter_mut());
            for_each_block_mean([r0, r1, g0, g1, b0, b1], |r, g, b| {
                if let Some((uo, vo)) = out.next() {
                    (*uo, *vo) = k.encode_uv(r, g, b);
                }
            });
        }
    }
    Ok(())
}

/// Calls `f(r, g, b)` with the means of the clamped values of each 2×2 block of two
/// rows `[r0, r1, g0, g1, b0, b1]`, left to right (a lone last column makes a 1×2
/// block; an odd last row is passed as both rows).
#[inline(always)]
fn for_each_block_mean(rows: [&[f32]; 6], mut f: impl FnMut(f32, f32, f32)) {
    let [r0, r1, g0, g1, b0, b1] = rows.map(|r| r.as_chunks::<2>());
    let mean4 = |a: &[f32; 2], b: &[f32; 2]| 0.25 * (clamp01(a[0]) + clamp01(a[1]) + clamp01(b[0]) + clamp01(b[1]));
    let pairs =
        r0.0.iter()
            .zip(r1.0)
            .zip(g0.0.iter().zip(g1.0))
            .zip(b0.0.iter().zip(b1.0));
    for (((ra, rb), (ga, gb)), (ba, bb)) in pairs {
        f(mean4(ra, rb), mean4(ga, gb), mean4(ba, bb));
    }
    if let ([ra], [rb], [ga], [gb], [ba], [bb]) = (r0.1, r1.1, g0.1, g1.1, b0.1, b1.1) {
        let mean2 = |a: f32, b: f32| 0.5 * (clamp01(a) + clamp01(b));
        f(mean2(*ra, *rb), mean2(*ga, *gb), mean2(*ba, *bb));
    }
}

/// Blends class colours into the planar image in place:
/// out = (1−alpha)·img + alpha·colour/255 for each pixel whose label <
/// palette.len(); other labels (e.g. 255) untouched. `labels`: row-major, row stride
/// `labels_stride`, covering at least width×height.
///
/// # Panics
/// When `planar` is smaller than `3*pw*ph`, `width > pw`, `height > ph`, or `labels`
/// is smaller than the width×height it must cover.
#[allow(clippy::too_many_arguments)]
pub fn blend_labels(
    planar: &mut [f32],
    pw: usize,
    ph: usize,
    width: usize,
    height: usize,
    labels: &[u8],
    labels_stride: usize,
    palette: &[[u8; 3]],
    alpha: f32,
) {
    assert!(
        width <= pw && height <= ph,
        "blend_labels: frame exceeds the planar size"
    );
    assert!(
        planar.len() >= planar_len(pw, ph),
        "blend_labels: planar buffer too small"
    );
    if width == 0 || height == 0 {
        return;
    }
    assert!(
        labels_stride >= width && labels.len() >= (height - 1) * labels_stride + width,
        "blend_labels: label map too small"
    );
    let (keep, add) = blend_tables(palette, alpha);
    let plane = pw * ph;
    for (c, plane) in planar.chunks_exact_mut(plane).take(3).enumerate() {
        for (row, lrow) in plane
            .chunks_exact_mut(pw)
            .take(height)
            .zip(labels.chunks(labels_stride))
        {
            for (p, &l) in row[..width].iter_mut().zip(&lrow[..width]) {
                let l = usize::from(l);
                *p = keep[l] * *p + add[l][c];
            }
        }
    }
}

/// Per label: the factor on the image and the colour term (on the [0,1] scale) of
/// `out = keep·img + add`; labels outside the palette keep the pixel (factor 1, term
/// 0), so the inner loops have no branch. Shared by [`blend_labels`] and
/// [`blend_labels_frame`], which therefore compute bit-identical values.
#[inline(always)]
fn blend_tables(palette: &[[u8; 3]], alpha: f32) -> ([f32; 256], [[f32; 3]; 256]) {
    let mut keep = [1.0f32; 256];
    let mut add = [[0.0f32; 3]; 256];
    for ((k, a), c) in keep.iter_mut().zip(add.iter_mut()).zip(palette) {
        *k = 1.0 - alpha;
        for i in 0..3 {
            a[i] = alpha * (f32::from(c[i]) * INV255);
        }
    }
    (keep, add)
}

/// Checks a packed RGB-family frame of `data_len` bytes and a label map of
/// `labels_len` bytes (rows of `labels_stride`) covering it.
fn check_packed_labels(data_len: usize, layout: &FrameLayout, labels_len: usize, labels_stride: usize) -> Result<()> {
    if layout.format.bytes_per_pixel().is_none() {
        return Err(Error::Frame(format!(
            "{} is not a packed RGB format: class colours need RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB or ABGR",
            layout.format
        )));
    }
    layout.validate(data_len)?;
    let (w, h) = (layout.width, layout.height);
    let fits = labels_stride >= w
        && labels_stride
            .checked_mul(h - 1)
            .and_then(|v| v.checked_add(w))
            .is_some_and(|end| end <= labels_len);
    if !fits {
        return Err(Error::Frame(format!(
            "class map of {labels_len} bytes with rows of {labels_stride} does not cover {w}x{h}"
        )));
    }
    Ok(())
}

/// Blends class colours over a packed RGB-family frame (RGB, BGR, RGBx, BGRx, xRGB,
/// xBGR, RGBA, BGRA, ARGB, ABGR) in place: each colour byte `v` of a pixel whose
/// label < palette.len() becomes round(((1−alpha)·v/255 + alpha·colour/255)·255),
/// computed in f32 exactly as [`frame_to_planar`], [`blend_labels`] and
/// [`planar_to_frame`] compute it, so both paths give the same bytes (halves round
/// to even). Other labels (e.g. 255), x/alpha bytes and stride padding are
/// untouched. `labels`: row-major, row stride `labels_stride`, covering the frame.
///
/// Errors for YUV formats, a layout that does not fit `dst`, or a label map too
/// small for the frame.
pub fn blend_labels_frame(
    dst: &mut [u8],
    layout: &FrameLayout,
    labels: &[u8],
    labels_stride: usize,
    palette: &[[u8; 3]],
    alpha: f32,
) -> Result<()> {
    check_packed_labels(dst.len(), layout, labels.len(), labels_stride)?;
    let (keep, add) = blend_tables(palette, alpha);
    let t = (&keep, &add);
    match layout.format {
        PixelFormat::Rgb => blend_packed::<3, 0, 1, 2>(dst, layout, labels, labels_stride, t),
        PixelFormat::Bgr => blend_packed::<3, 2, 1, 0>(dst, layout, labels, labels_stride, t),
        PixelFormat::Rgbx | PixelFormat::Rgba => blend_packed::<4, 0, 1, 2>(dst, layout, labels, labels_stride, t),
        PixelFormat::Bgrx | PixelFormat::Bgra => blend_packed::<4, 2, 1, 0>(dst, layout, labels, labels_stride, t),
        PixelFormat::Xrgb | PixelFormat::Argb => blend_packed::<4, 1, 2, 3>(dst, layout, labels, labels_stride, t),
        PixelFormat::Xbgr | PixelFormat::Abgr => blend_packed::<4, 3, 2, 1>(dst, layout, labels, labels_stride, t),
        PixelFormat::I420 | PixelFormat::Nv12 => unreachable!("checked above"),
    }
    Ok(())
}

fn blend_packed<const BPP: usize, const R: usize, const G: usize, const B: usize>(
    dst: &mut [u8],
    layout: &FrameLayout,
    labels: &[u8],
    labels_stride: usize,
    (keep, add): (&[f32; 256], &[[f32; 3]; 256]),
) {
    let (w, h) = (layout.width, layout.height);
    let (off, stride) = (layout.offsets[0], layout.strides[0]);
    for y in 0..h {
        let start = off + y * stride;
        let (px, _) = dst[start..start + w * BPP].as_chunks_mut::<BPP>();
        let lrow = &labels[y * labels_stride..y * labels_stride + w];
        for (px, &l) in px.iter_mut().zip(lrow) {
            let l = usize::from(l);
            let (k, a) = (keep[l], &add[l]);
            // Same operations, in the same order, as unpack + blend_labels + pack.
            px[R] = to_u8(k * (f32::from(px[R]) * INV255) + a[0]);
            px[G] = to_u8(k * (f32::from(px[G]) * INV255) + a[1]);
            px[B] = to_u8(k * (f32::from(px[B]) * INV255) + a[2]);
        }
    }
}

/// Draws the class boundaries of a label map over a packed RGB-family frame in
/// place, 1 pixel wide and opaque: a pixel whose label differs from its left or its
/// upper neighbour's takes its own class colour (when its label < palette.len()).
/// Every other byte is untouched. Same formats, arguments and errors as
/// [`blend_labels_frame`].
pub fn outline_labels_frame(
    dst: &mut [u8],
    layout: &FrameLayout,
    labels: &[u8],
    labels_stride: usize,
    palette: &[[u8; 3]],
) -> Result<()> {
    check_packed_labels(dst.len(), layout, labels.len(), labels_stride)?;
    match layout.format {
        PixelFormat::Rgb => outline_packed::<3, 0, 1, 2>(dst, layout, labels, labels_stride, palette),
        PixelFormat::Bgr => outline_packed::<3, 2, 1, 0>(dst, layout, labels, labels_stride, palette),
        PixelFormat::Rgbx | PixelFormat::Rgba => {
            outline_packed::<4, 0, 1, 2>(dst, layout, labels, labels_stride, palette)
        }
        PixelFormat::Bgrx | PixelFormat::Bgra => {
            outline_packed::<4, 2, 1, 0>(dst, layout, labels, labels_stride, palette)
        }
        PixelFormat::Xrgb | PixelFormat::Argb => {
            outline_packed::<4, 1, 2, 3>(dst, layout, labels, labels_stride, palette)
        }
        PixelFormat::Xbgr | PixelFormat::Abgr => {
            outline_packed::<4, 3, 2, 1>(dst, layout, labels, labels_stride, palette)
        }
        PixelFormat::I420 | PixelFormat::Nv12 => unreachable!("checked above"),
    }
    Ok(())
}

fn outline_packed<const BPP: usize, const R: usize, const G: usize, const B: usize>(
    dst: &mut [u8],
    layout: &FrameLayout,
    labels: &[u8],
    labels_stride: usize,
    palette: &[[u8; 3]],
) {
    let (w, h) = (layout.width, layout.height);
    let (off, stride) = (layout.offsets[0], layout.strides[0]);
    for y in 0..h {
        let row = &labels[y * labels_stride..y * labels_stride + w];
        // The first row has no upper neighbour: compare it with itself.
        let up = if y > 0 {
            &labels[(y - 1) * labels_stride..(y - 1) * labels_stride + w]
        } else {
            row
        };
        let start = off + y * stride;
        let (px, _) = dst[start..start + w * BPP].as_chunks_mut::<BPP>();
        let mut left = row[0];
        for ((px, &l), &u) in px.iter_mut().zip(row).zip(up) {
            if l != left || l != u {
                if let Some(c) = palette.get(usize::from(l)) {
                    px[R] = c[0];
                    px[G] = c[1];
                    px[B] = c[2];
                }
            }
            left = l;
        }
    }
}

/// Copies the top-left width×height of a label map with rows of `src_stride` bytes
/// into dst rows of `dst_stride` bytes (a GRAY8 frame). Bytes past `width` in each
/// dst row are untouched.
///
/// # Panics
/// When a stride is below `width` or a slice is too small.
pub fn copy_labels(src: &[u8], src_stride: usize, width: usize, height: usize, dst: &mut [u8], dst_stride: usize) {
    if width == 0 || height == 0 {
        return;
    }
    assert!(
        src_stride >= width && dst_stride >= width,
        "copy_labels: stride below width"
    );
    assert!(
        src.len() >= (height - 1) * src_stride + width && dst.len() >= (height - 1) * dst_stride + width,
        "copy_labels: buffer too small"
    );
    for (d, s) in dst.chunks_mut(dst_stride).zip(src.chunks(src_stride)).take(height) {
        d[..width].copy_from_slice(&s[..width]);
    }
}

/// Values per counting block of the checked copies below: their counters are u32, so
/// that the loops vectorize.
const CHECK_BLOCK: usize = 1 << 16;

/// Copies `src` into `dst` block by block, each value through `f`, which says whether
/// the value was invalid; returns how many were.
#[inline(always)]
fn copy_counting<T: Copy>(dst: &mut [T], src: &[T], f: impl Fn(&mut T, T) -> bool) -> usize {
    assert_eq!(dst.len(), src.len(), "checked copy: lengths differ");
    let mut bad = 0usize;
    for (d, s) in dst.chunks_mut(CHECK_BLOCK).zip(src.chunks(CHECK_BLOCK)) {
        let mut n = 0u32;
        for (d, &s) in d.iter_mut().zip(s) {
            n += u32::from(f(d, s));
        }
        bad += n as usize;
    }
    bad
}

/// Copies a model's image output into `dst` where it is finite and keeps what `dst`
/// holds (the model's input) where it is NaN or infinite, so that a broken model shows
/// the input there instead of black. Returns how many values were not finite.
///
/// # Panics
/// When the slices differ in length.
pub fn copy_finite(dst: &mut [f32], src: &[f32]) -> usize {
    const EXPONENT: u32 = 0x7f80_0000;
    copy_counting(dst, src, |d, s| {
        // All exponent bits set: infinite or NaN.
        let bad = s.to_bits() & EXPONENT == EXPONENT;
        *d = if bad { *d } else { s };
        bad
    })
}

/// Copies a model's logits, NaN replaced by −∞ so that a NaN never wins the argmax
/// (a NaN compares false with everything, so the first class would keep it). Returns
/// how many were NaN.
///
/// # Panics
/// When the slices differ in length.
pub fn copy_logits(dst: &mut [f32], src: &[f32]) -> usize {
    copy_counting(dst, src, |d, s| {
        let nan = s.is_nan();
        *d = if nan { f32::NEG_INFINITY } else { s };
        nan
    })
}

/// Copies a model's class ids, an id of `classes` or more (outside the sidecar's class
/// list) replaced by 0, so that no id without a class, colour or name leaves the
/// engine. Returns how many were replaced.
///
/// # Panics
/// When the slices differ in length.
pub fn copy_class_ids(dst: &mut [u8], src: &[u8], classes: usize) -> usize {
    let Ok(limit) = u8::try_from(classes) else {
        // 256 classes or more: every id is one.
        dst.copy_from_slice(src);
        return 0;
    };
    copy_counting(dst, src, |d, s| {
        let out = s >= limit;
        *d = if out { 0 } else { s };
        out
    })
}

/// Upsamples logits `[classes, lh, lw]` to `[ph, pw]` bilinearly (PyTorch
/// `interpolate(mode="bilinear", align_corners=False)`: src = (dst+0.5)·lh/ph − 0.5,
/// clamped at the edges) and writes the argmax (first max wins) per pixel into `dst`
/// (row stride `pw`). Only the top-left width×height is computed and written.
///
/// # Panics
/// As [`logits_to_labels_mapped`], and when `width > pw` or `height > ph`.
#[allow(clippy::too_many_arguments)]
pub fn logits_to_labels(
    logits: &[f32],
    classes: usize,
    lh: usize,
    lw: usize,
    ph: usize,
    pw: usize,
    width: usize,
    height: usize,
    dst: &mut [u8],
) {
    assert!(
        width <= pw && height <= ph,
        "logits_to_labels: frame exceeds the output size"
    );
    let maps = Placement::padded(pw, ph).to_output((lw, lh));
    logits_to_labels_mapped(logits, classes, (lh, lw), maps, pw, (width, height), dst);
}

/// Writes the class map of a `width` x `height` frame into `dst` (row stride
/// `stride`): at each pixel, the argmax (first max wins) of the logits `[classes, lh,
/// lw]` interpolated bilinearly (PyTorch's `align_corners=False`, clamped at the edges)
/// at the position the (y, x) [`AxisMap`]s give (from
/// [`Placement::to_output`](crate::preprocess::Placement::to_output)).
///
/// When upsampling, a pixel whose four source pixels share the same argmax takes it
/// without interpolating (bilinear weights are non-negative, so that class is the
/// maximum in between too); only pixels near class boundaries interpolate every class.
///
/// # Panics
/// When `classes` is 0 or above 256, `lh` or `lw` is 0, `width > stride`, or a slice
/// is too small.
pub fn logits_to_labels_mapped(
    logits: &[f32],
    classes: usize,
    (lh, lw): (usize, usize),
    (ymap, xmap): (AxisMap, AxisMap),
    stride: usize,
    (width, height): (usize, usize),
    dst: &mut [u8],
) {
    if width == 0 || height == 0 {
        return;
    }
    assert!((1..=256).contains(&classes), "logits_to_labels: {classes} classes");
    assert!(lh > 0 && lw > 0, "logits_to_labels: empty logits");
    assert!(width <= stride, "logits_to_labels: frame exceeds the stride");
    let plane = lh * lw;
    assert!(logits.len() >= classes * plane, "logits_to_labels: logits too small");
    assert!(
        dst.len() >= (height - 1) * stride + width,
        "logits_to_labels: dst too small"
    );
    let logits = &logits[..classes * plane];

    const CHUNK: usize = 256;
    const SPAN: usize = CHUNK + 2;
    if ymap.is_identity() && xmap.is_identity() && width <= lw && height <= lh {
        // Same grid: interpolation is the identity.
        let mut best = [0.0f32; CHUNK];
        for y in 0..height {
            for cx in (0..width).step_by(CHUNK) {
                let n = CHUNK.min(width - cx);
                let d = &mut dst[y * stride + cx..y * stride + cx + n];
                argmax_run(logits, plane, y * lw + cx, &mut best[..n], d);
            }
        }
        return;
    }

    if xmap.scale > 1.0 {
        // Downsampling (unusual): interpolate every class at every pixel.
        return labels_direct(logits, classes, (lh, lw), (ymap, xmap), stride, width, height, dst);
    }
    let mut xi0 = [0usize; CHUNK];
    let mut xi1 = [0usize; CHUNK];
    let mut xw1 = [0.0f32; CHUNK];
    let mut best = [0.0f32; SPAN];
    // Argmax of the source pixels under the chunk, for source rows `rows[0]`, `rows[1]`.
    let mut am = [[0u8; SPAN]; 2];
    for cx in (0..width).step_by(CHUNK) {
        let n = CHUNK.min(width - cx);
        for (x, ((i0, i1), w1)) in (cx..).zip(xi0[..n].iter_mut().zip(xi1[..n].iter_mut()).zip(xw1[..n].iter_mut())) {
            (*i0, *i1, *w1) = xmap.bilinear(x, lw);
        }
        // With a scale of at most 1, n columns read at most n + 1 source columns.
        let lo = xi0[0];
        let span = xi1[n - 1] + 1 - lo;
        debug_assert!(span <= SPAN);
        let mut rows = [usize::MAX; 2];
        for y in 0..height {
            let (y0, y1, wy1) = ymap.bilinear(y, lh);
            for (slot, src_row) in [y0, y1].into_iter().enumerate() {
                if rows[slot] == src_row {
                    continue;
                }
                let other = 1 - slot;
                if rows[other] == src_row {
                    am[slot] = am[other];
                } else {
                    argmax_run(
                        logits,
                        plane,
                        src_row * lw + lo,
                        &mut best[..span],
                        &mut am[slot][..span],
                    );
                }
                rows[slot] = src_row;
            }
            let d = &mut dst[y * stride + cx..y * stride + cx + n];
            let cols = xi0[..n].iter().zip(&xi1[..n]).zip(&xw1[..n]);
            for (o, ((&i0, &i1), &w1)) in d.iter_mut().zip(cols) {
                let (a0, a1) = (i0 - lo, i1 - lo);
                let c = am[0][a0];
                // Bilinear weights are non-negative, so a class that is the (first)
                // maximum at all four source pixels is the maximum in between.
                if am[0][a1] == c && am[1][a0] == c && am[1][a1] == c {
                    *o = c;
                } else {
                    let at = [y0 * lw + i0, y0 * lw + i1, y1 * lw + i0, y1 * lw + i1];
                    *o = argmax_bilinear(logits, plane, at, wy1, w1);
                }
            }
        }
    }
}

/// Writes into `out` the argmax over classes of `out.len()` consecutive logits
/// starting at `start` in every class plane; `best` is scratch of the same length.
#[inline(always)]
fn argmax_run(logits: &[f32], plane: usize, start: usize, best: &mut [f32], out: &mut [u8]) {
    let n = out.len();
    let mut planes = logits.chunks_exact(plane).map(|p| &p[start..start + n]);
    if let Some(first) = planes.next() {
        best.copy_from_slice(first);
        out.fill(0);
    }
    for (c, row) in planes.enumerate() {
        let c = (c + 1) as u8;
        for ((b, o), &v) in best.iter_mut().zip(out.iter_mut()).zip(row) {
            // Selects rather than a branch, so that the loop vectorizes.
            let gt = v > *b;
            *b = if gt { v } else { *b };
            *o = if gt { c } else { *o };
        }
    }
}

/// Argmax over classes of the bilinear interpolation of the four source pixels at
/// plane offsets `at` = [y0x0, y0x1, y1x0, y1x1], in PyTorch's order of operations.
#[inline(always)]
fn argmax_bilinear(logits: &[f32], plane: usize, at: [usize; 4], wy1: f32, wx1: f32) -> u8 {
    let (wy0, wx0) = (1.0 - wy1, 1.0 - wx1);
    let mut best = f32::NEG_INFINITY;
    let mut label = 0u8;
    for (c, p) in logits.chunks_exact(plane).enumerate() {
        let v = wy0 * (wx0 * p[at[0]] + wx1 * p[at[1]]) + wy1 * (wx0 * p[at[2]] + wx1 * p[at[3]]);
        if c == 0 || v > best {
            best = v;
            label = c as u8;
        }
    }
    label
}

/// The general path: every class interpolated at every pixel.
#[allow(clippy::too_many_arguments)]
fn labels_direct(
    logits: &[f32],
    classes: usize,
    (lh, lw): (usize, usize),
    (ymap, xmap): (AxisMap, AxisMap),
    stride: usize,
    width: usize,
    height: usize,
    dst: &mut [u8],
) {
    let plane = lh * lw;
    debug_assert_eq!(logits.len(), classes * plane);
    for y in 0..height {
        let (y0, y1, wy1) = ymap.bilinear(y, lh);
        for (x, o) in dst[y * stride..y * stride + width].iter_mut().enumerate() {
            let (x0, x1, wx1) = xmap.bilinear(x, lw);
            let at = [y0 * lw + x0, y0 * lw + x1, y1 * lw + x0, y1 * lw + x1];
            *o = argmax_bilinear(logits, plane, at, wy1, wx1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_finite_keeps_the_input_where_the_output_is_nan_or_infinite() {
        let mut dst = vec![0.1, 0.2, 0.3, 0.4, 0.5];
        let src = [0.9, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0];
        assert_eq!(copy_finite(&mut dst, &src), 3);
        assert_eq!(dst, vec![0.9, 0.2, 0.3, 0.4, 0.0]);
    }

    #[test]
    fn nan_logits_never_win_the_argmax() {
        // Class 0 NaN, class 1 the largest finite logit, at every one of 3 pixels.
        let src = [f32::NAN, f32::NAN, 0.5, 0.2, 0.9, 0.1, 0.1, 0.3, 0.7];
        let mut logits = vec![0.0; 9];
        assert_eq!(copy_logits(&mut logits, &src), 2);
        let mut labels = vec![9u8; 3];
        logits_to_labels(&logits, 3, 1, 3, 1, 3, 3, 1, &mut labels);
        assert_eq!(labels, vec![1, 1, 2]);
    }

    #[test]
    fn class_ids_outside_the_class_list_become_zero() {
        let src = [0u8, 1, 2, 3, 200, 255];
        let mut dst = vec![7u8; 6];
        assert_eq!(copy_class_ids(&mut dst, &src, 3), 3);
        assert_eq!(dst, vec![0, 1, 2, 0, 0, 0]);
        assert_eq!(copy_class_ids(&mut dst, &src, 256), 0);
        assert_eq!(dst, src.to_vec());
    }

    /// Deterministic pseudo-random bytes.
    fn noise(n: usize, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 24) as u8
            })
            .collect()
    }

    fn packed_formats() -> impl Iterator<Item = PixelFormat> {
        PixelFormat::ALL.iter().copied().filter(|f| !f.is_yuv())
    }

    /// A copy of `layout` with extra bytes per row and a leading offset.
    fn strided(layout: &FrameLayout, extra: usize, lead: usize) -> FrameLayout {
        let mut l = layout.clone();
        let mut off = lead;
        for p in 0..l.n_planes() {
            let (row, rows) = l.plane_extent(p);
            l.strides[p] = row + extra + p;
            l.offsets[p] = off;
            off += l.strides[p] * rows + 3;
        }
        l.size = off;
        l
    }

    #[test]
    fn rgb_family_roundtrip_is_exact() {
        for f in packed_formats() {
            for (w, h) in [(1, 1), (5, 3), (17, 9), (64, 2)] {
                let base = FrameLayout::packed(f, w, h);
                for layout in [base.clone(), strided(&base, 5, 7)] {
                    let mut src = noise(layout.size, (w * h) as u32);
                    let bpp = f.bytes_per_pixel().unwrap();
                    let filler = f.name().find(['x', 'A']);
                    if let Some(fi) = filler {
                        for y in 0..h {
                            for x in 0..w {
                                src[layout.offsets[0] + y * layout.strides[0] + x * bpp + fi] = 255;
                            }
                        }
                    }
                    let (pw, ph) = (w + 3, h + 2);
                    let mut planar = vec![f32::NAN; planar_len(pw, ph)];
                    frame_to_planar(&src, &layout, &mut planar, pw, ph).unwrap();
                    assert!(planar.iter().all(|v| (0.0..=1.0).contains(v)));
                    let mut out = vec![0xABu8; layout.size];
                    planar_to_frame(&planar, pw, ph, &layout, &mut out).unwrap();
                    for i in 0..layout.size {
                        let off = i.wrapping_sub(layout.offsets[0]);
                        let (y, col) = (off / layout.strides[0], off % layout.strides[0]);
                        let inside = i >= layout.offsets[0] && y < h && col < w * bpp;
                        let expect = if inside { src[i] } else { 0xAB };
                        assert_eq!(out[i], expect, "{f} {w}x{h} byte {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn channel_order_and_filler_bytes() {
        for f in packed_formats() {
            let name = f.name();
            let bpp = f.bytes_per_pixel().unwrap();
            let layout = FrameLayout::packed(f, 1, 1);
            let mut src = vec![0u8; layout.size];
            src[name.find('R').unwrap()] = 10;
            src[name.find('G').unwrap()] = 20;
            src[name.find('B').unwrap()] = 30;
            let mut planar = [0.0f32; 3];
            frame_to_planar(&src, &layout, &mut planar, 1, 1).unwrap();
            assert_eq!(planar, [10.0 * INV255, 20.0 * INV255, 30.0 * INV255], "{f}");
            for (v, e) in planar.iter().zip([10.0, 20.0, 30.0]) {
                assert!((v - e / 255.0).abs() < 1e-7);
            }
            let mut out = vec![0u8; layout.size];
            planar_to_frame(&[0.2, 0.4, 0.6], 1, 1, &layout, &mut out).unwrap();
            assert_eq!(out[name.find('R').unwrap()], 51, "{f}");
            assert_eq!(out[name.find('G').unwrap()], 102, "{f}");
            assert_eq!(out[name.find('B').unwrap()], 153, "{f}");
            if bpp == 4 {
                assert_eq!(out[name.find(['x', 'A']).unwrap()], 255, "{f}");
            }
        }
    }

    #[test]
    fn output_clamps_and_rounds() {
        let layout = FrameLayout::packed(PixelFormat::Rgb, 4, 1);
        let r = [-0.5, 1.7, 0.5, f32::NAN];
        let g = [0.0, 1.0, 0.499 / 255.0, 0.501 / 255.0];
        let b = [254.6 / 255.0, 254.49 / 255.0, f32::INFINITY, f32::NEG_INFINITY];
        let planar: Vec<f32> = [r, g, b].concat();
        let mut out = vec![0u8; layout.size];
        planar_to_frame(&planar, 4, 1, &layout, &mut out).unwrap();
        assert_eq!(&out[..12], &[0, 0, 255, 255, 255, 254, 128, 0, 255, 0, 1, 0]);
    }

    #[test]
    fn padding_is_edge_replicated() {
        let (w, h, pw, ph) = (3, 2, 5, 4);
        let layout = FrameLayout::packed(PixelFormat::Rgb, w, h);
        let mut src = vec![0u8; layout.size];
        for y in 0..h {
            for x in 0..w {
                let i = y * layout.strides[0] + 3 * x;
                src[i] = (10 * y + x) as u8;
                src[i + 1] = 100 + (10 * y + x) as u8;
                src[i + 2] = 200;
            }
        }
        let mut planar = vec![-1.0; planar_len(pw, ph) + 7];
        frame_to_planar(&src, &layout, &mut planar, pw, ph).unwrap();
        let r: Vec<u8> = planar[..pw * ph].iter().map(|v| (v * 255.0).round() as u8).collect();
        #[rustfmt::skip]
        assert_eq!(r, [
            0, 1, 2, 2, 2,
            10, 11, 12, 12, 12,
            10, 11, 12, 12, 12,
            10, 11, 12, 12, 12,
        ]);
        let g: Vec<u8> = planar[pw * ph..2 * pw * ph]
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        assert_eq!(g[pw * ph - 1], 112);
        assert!(planar[2 * pw * ph..3 * pw * ph].iter().all(|&v| v == 200.0 * INV255));
        assert!(
            planar[3 * pw * ph..].iter().all(|&v| v == -1.0),
            "past the planes untouched"
        );
        // YUV pads too.
        for f in [PixelFormat::I420, PixelFormat::Nv12] {
            let layout = FrameLayout::packed(f, 3, 3);
            let src: Vec<u8> = (0..layout.size as u8).map(|i| 100 + i).collect();
            let (pw, ph) = (8, 4);
            let mut planar = vec![0.0; planar_len(pw, ph)];
            frame_to_planar(&src, &layout, &mut planar, pw, ph).unwrap();
            for p in planar.chunks_exact(pw * ph) {
                for y in 0..ph {
                    let row = &p[y * pw..(y + 1) * pw];
                    assert!(row[3..].iter().all(|&v| v == row[2]));
                    assert_eq!(row, &p[(y.min(2)) * pw..(y.min(2) + 1) * pw]);
                }
            }
        }
    }

    #[test]
    fn strided_layouts_match_packed() {
        for &f in PixelFormat::ALL {
            for (w, h) in [(1, 1), (7, 5), (16, 6), (9, 10)] {
                let packed = FrameLayout::packed(f, w, h);
                let wide = strided(&packed, 6, 11);
                let src = noise(packed.size, 7);
                // Same pixels in the strided layout.
                let mut src2 = noise(wide.size, 9);
                for p in 0..f.n_planes() {
                    let (row, rows) = packed.plane_extent(p);
                    for y in 0..rows {
                        let a = packed.offsets[p] + y * packed.strides[p];
                        let b = wide.offsets[p] + y * wide.strides[p];
                        src2[b..b + row].copy_from_slice(&src[a..a + row]);
                    }
                }
                let mut p1 = vec![0.0; planar_len(w, h)];
                let mut p2 = vec![0.0; planar_len(w, h)];
                frame_to_planar(&src, &packed, &mut p1, w, h).unwrap();
                frame_to_planar(&src2, &wide, &mut p2, w, h).unwrap();
                assert_eq!(p1, p2, "{f} {w}x{h}");
                let mut o1 = vec![0u8; packed.size];
                let mut o2 = src2.clone();
                planar_to_frame(&p1, w, h, &packed, &mut o1).unwrap();
                planar_to_frame(&p1, w, h, &wide, &mut o2).unwrap();
                for p in 0..f.n_planes() {
                    let (row, rows) = packed.plane_extent(p);
                    for y in 0..rows {
                        let a = packed.offsets[p] + y * packed.strides[p];
                        let b = wide.offsets[p] + y * wide.strides[p];
                        assert_eq!(o1[a..a + row], o2[b..b + row], "{f} {w}x{h} plane {p} row {y}");
                        // Stride padding untouched.
                        let pad = b + row..b + wide.strides[p];
                        assert_eq!(o2[pad.clone()], src2[pad]);
                    }
                }
            }
        }
    }

    fn yuv_frame(layout: &FrameLayout, y: u8, u: u8, v: u8) -> Vec<u8> {
        let mut buf = vec![0u8; layout.size];
        for p in 0..layout.n_planes() {
            let (row, rows) = layout.plane_extent(p);
            for r in 0..rows {
                let s = layout.offsets[p] + r * layout.strides[p];
                for (i, b) in buf[s..s + row].iter_mut().enumerate() {
                    *b = match (layout.format, p) {
                        (_, 0) => y,
                        (PixelFormat::I420, 1) => u,
                        (PixelFormat::I420, _) => v,
                        _ if i % 2 == 0 => u,
                        _ => v,
                    };
                }
            }
        }
        buf
    }

    #[test]
    fn yuv_reference_colours() {
        for f in [PixelFormat::I420, PixelFormat::Nv12] {
            let lim = FrameLayout::packed(f, 3, 3);
            let full = lim.clone().with_colorimetry(YuvMatrix::Bt601, true);
            let cases: [(&FrameLayout, [u8; 3], [f32; 3]); 6] = [
                (&lim, [235, 128, 128], [1.0; 3]),
                (&lim, [16, 128, 128], [0.0; 3]),
                (&lim, [126, 128, 128], [110.0 / 219.0; 3]),
                (&full, [255, 128, 128], [1.0; 3]),
                (&full, [0, 128, 128], [0.0; 3]),
                (&lim, [0, 128, 128], [0.0; 3]), // below black clamps
            ];
            for (layout, [y, u, v], rgb) in cases {
                let src = yuv_frame(layout, y, u, v);
                let mut planar = vec![0.0; planar_len(3, 3)];
                frame_to_planar(&src, layout, &mut planar, 3, 3).unwrap();
                for (c, p) in planar.chunks_exact(9).enumerate() {
                    for &val in p {
                        assert!((val - rgb[c]).abs() < 1e-6, "{f} {y},{u},{v}: {val} vs {}", rgb[c]);
                    }
                }
            }
            // Limited-range BT.601 red (81, 90, 240) decodes to about (1, 0, 0).
            let src = yuv_frame(&lim, 81, 90, 240);
            let mut planar = vec![0.0; planar_len(3, 3)];
            frame_to_planar(&src, &lim, &mut planar, 3, 3).unwrap();
            assert!((planar[0] * 255.0 - 255.0).abs() < 1.5);
            assert!(planar[9] * 255.0 < 1.5 && planar[18] * 255.0 < 1.5);

            // Encoding: white, black, red under each matrix and range.
            let encode = |layout: &FrameLayout, rgb: [f32; 3]| {
                let planar: Vec<f32> = rgb.iter().flat_map(|&c| [c; 9]).collect();
                let mut out = vec![0u8; layout.size];
                planar_to_frame(&planar, 3, 3, layout, &mut out).unwrap();
                let o = layout.offsets;
                match f {
                    PixelFormat::I420 => [out[0], out[o[1]], out[o[2]]],
                    _ => [out[0], out[o[1]], out[o[1] + 1]],
                }
            };
            let l709 = lim.clone().with_colorimetry(YuvMatrix::Bt709, false);
            let f709 = lim.clone().with_colorimetry(YuvMatrix::Bt709, true);
            assert_eq!(encode(&lim, [1.0; 3]), [235, 128, 128]);
            assert_eq!(encode(&lim, [0.0; 3]), [16, 128, 128]);
            assert_eq!(encode(&full, [1.0; 3]), [255, 128, 128]);
            assert_eq!(encode(&full, [0.0; 3]), [0, 128, 128]);
            assert_eq!(encode(&lim, [1.0, 0.0, 0.0]), [81, 90, 240]);
            assert_eq!(encode(&lim, [0.0, 1.0, 0.0]), [145, 54, 34]);
            assert_eq!(encode(&lim, [0.0, 0.0, 1.0]), [41, 240, 110]);
            assert_eq!(encode(&l709, [1.0, 0.0, 0.0]), [63, 102, 240]);
            assert_eq!(encode(&l709, [0.0, 0.0, 1.0]), [32, 240, 118]);
            assert_eq!(encode(&full, [1.0, 0.0, 0.0]), [76, 85, 255]);
            assert_eq!(encode(&f709, [1.0; 3]), [255, 128, 128]);
        }
    }

    /// A smooth 8-bit image; `blocky`: constant over each 2x2 block, so that
    /// chroma subsampling loses nothing.
    fn smooth_planar(w: usize, h: usize, blocky: bool) -> Vec<f32> {
        let mut p = vec![0.0; planar_len(w, h)];
        for y in 0..h {
            for x in 0..w {
                let (sx, sy) = if blocky { (x / 2 * 2, y / 2 * 2) } else { (x, y) };
                let (fx, fy) = (sx as f32 / 200.0, sy as f32 / 150.0);
                p[y * w + x] = 0.1 + 0.8 * fx;
                p[w * h + y * w + x] = 0.2 + 0.5 * fy + 0.2 * fx;
                p[2 * w * h + y * w + x] = 0.9 - 0.6 * fx * fy;
            }
        }
        // 8-bit values, as they come from an RGB frame.
        p.iter().map(|&v| f32::from(to_u8(v)) * INV255).collect()
    }

    #[test]
    fn yuv_roundtrip_on_smooth_images() {
        for f in [PixelFormat::I420, PixelFormat::Nv12] {
            for (w, h) in [(1, 1), (2, 2), (7, 5), (33, 17), (64, 48)] {
                for matrix in [YuvMatrix::Bt601, YuvMatrix::Bt709] {
                    for full in [false, true] {
                        let layout = FrameLayout::packed(f, w, h).with_colorimetry(matrix, full);
                        let layout2 = strided(&layout, 3, 5);
                        // RGB -> YUV -> RGB: within 2 of 255 where chroma subsampling
                        // loses nothing (8-bit YUV quantization alone costs up to about
                        // 1.7), within 3 (and 1 on average) on a smooth gradient.
                        for (blocky, max_err) in [(true, 2), (false, 3)] {
                            let planar = smooth_planar(w, h, blocky);
                            let mut frame = vec![0u8; layout.size];
                            planar_to_frame(&planar, w, h, &layout, &mut frame).unwrap();
                            let mut back = vec![0.0; planar.len()];
                            frame_to_planar(&frame, &layout, &mut back, w, h).unwrap();
                            let errs = planar.iter().zip(&back).map(|(&a, &b)| to_u8(a).abs_diff(to_u8(b)));
                            let err = errs.clone().max().unwrap();
                            let mean = errs.map(f32::from).sum::<f32>() / planar.len() as f32;
                            let what = format!("{f} {w}x{h} {matrix:?} full={full} blocky={blocky}");
                            assert!(err <= max_err, "{what}: {err}");
                            assert!(mean <= 1.0, "{what}: mean {mean}");
                        }
                        // YUV -> RGB -> YUV keeps in-gamut values within 1.
                        let mut yuv = vec![0u8; layout2.size];
                        for p in 0..layout2.n_planes() {
                            let (row, rows) = layout2.plane_extent(p);
                            for r in 0..rows {
                                let s = layout2.offsets[p] + r * layout2.strides[p];
                                for (i, b) in yuv[s..s + row].iter_mut().enumerate() {
                                    *b = if p == 0 {
                                        (90 + (i + 2 * r) % 60) as u8
                                    } else {
                                        (118 + (i + r) % 20) as u8
                                    };
                                }
                            }
                        }
                        let mut planar = vec![0.0; planar_len(w, h)];
                        frame_to_planar(&yuv, &layout2, &mut planar, w, h).unwrap();
                        let mut again = yuv.clone();
                        planar_to_frame(&planar, w, h, &layout2, &mut again).unwrap();
                        let err = yuv.iter().zip(&again).map(|(&a, &b)| a.abs_diff(b)).max();
                        assert!(err <= Some(1), "{f} {w}x{h} {matrix:?} full={full}: {err:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn chroma_is_the_block_mean() {
        // 3x3 I420: the chroma of the first block averages four pixels, the last
        // column block two, the corner block one.
        let layout = FrameLayout::packed(PixelFormat::I420, 3, 3).with_colorimetry(YuvMatrix::Bt601, true);
        let mut planar = vec![0.0; planar_len(3, 3)];
        // Blue channel only: B = 1 at (0,0) and (2,2); the corner block is pure blue.
        planar[18] = 1.0;
        planar[18 + 8] = 1.0;
        let mut out = vec![0u8; layout.size];
        planar_to_frame(&planar, 3, 3, &layout, &mut out).unwrap();
        let u = &out[layout.offsets[1]..];
        let (u00, u01, u11) = (u[0], u[1], u[layout.strides[1] + 1]);
        // U of pure blue is 128 + 127.5 (saturates to 255); a quarter of it in block 0.
        assert_eq!(u11, 255);
        assert_eq!(u00, (128.5 + 0.25 * 127.5) as u8);
        assert_eq!(u01, 128);
    }

    #[test]
    fn size_errors() {
        let layout = FrameLayout::packed(PixelFormat::Rgba, 4, 4);
        let src = vec![0u8; layout.size];
        let mut planar = vec![0.0; planar_len(4, 4)];
        assert!(frame_to_planar(&src[..layout.size - 1], &layout, &mut planar, 4, 4).is_err());
        assert!(frame_to_planar(&src, &layout, &mut planar[..47], 4, 4).is_err());
        assert!(frame_to_planar(&src, &layout, &mut planar, 3, 4).is_err());
        assert!(frame_to_planar(&src, &layout, &mut planar, 4, 3).is_err());
        assert!(frame_to_planar(&src, &layout, &mut planar, usize::MAX, 4).is_err());
        frame_to_planar(&src, &layout, &mut planar, 4, 4).unwrap();
        let mut out = vec![0u8; layout.size];
        assert!(planar_to_frame(&planar[..47], 4, 4, &layout, &mut out).is_err());
        assert!(planar_to_frame(&planar, 4, 4, &layout, &mut out[..63]).is_err());
        assert!(matches!(
            planar_to_frame(&planar, 2, 2, &layout, &mut out),
            Err(Error::Frame(_))
        ));
        planar_to_frame(&planar, 4, 4, &layout, &mut out).unwrap();
        let mut bad = FrameLayout::packed(PixelFormat::I420, 4, 4);
        bad.offsets[2] = bad.offsets[1] + 1;
        let mut out = vec![0u8; bad.size];
        assert!(planar_to_frame(&planar, 4, 4, &bad, &mut out).is_err());
    }

    #[test]
    fn blend_matches_hand_computation() {
        let (pw, ph, w, h) = (3, 2, 2, 2);
        let mut planar = vec![0.5f32; planar_len(pw, ph)];
        let labels = [0u8, 1, 99, 99, 255, 2, 7];
        let palette = [[255, 0, 0], [0, 255, 0], [10, 20, 30]];
        blend_labels(&mut planar, pw, ph, w, h, &labels, 4, &palette, 0.25);
        let a = 0.25f32;
        let mix = |c: f32| 0.75 * 0.5 + a * c / 255.0;
        // Pixel (0,0) label 0 red; (0,1) label 1 green; (1,0) 255 untouched;
        // (1,1) label 2; column 2 outside the frame untouched.
        let r = &planar[..6];
        let g = &planar[6..12];
        let b = &planar[12..];
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(a, b)| (a - b).abs() < 1e-6);
        assert!(close(r, &[mix(255.0), mix(0.0), 0.5, 0.5, mix(10.0), 0.5]), "{r:?}");
        assert!(close(g, &[mix(0.0), mix(255.0), 0.5, 0.5, mix(20.0), 0.5]), "{g:?}");
        assert!(close(b, &[mix(0.0), mix(0.0), 0.5, 0.5, mix(30.0), 0.5]), "{b:?}");
        assert_eq!(planar[2], 0.5);
        assert_eq!(planar[3], 0.5);
        // Alpha 1 paints the colour exactly; alpha 0 leaves the image.
        let mut p = vec![0.3f32; 3];
        blend_labels(&mut p, 1, 1, 1, 1, &[0], 1, &[[255, 0, 51]], 1.0);
        assert!(close(&p, &[1.0, 0.0, 0.2]), "{p:?}");
        let before = p.clone();
        blend_labels(&mut p, 1, 1, 1, 1, &[0], 1, &[[0, 0, 0]], 0.0);
        assert_eq!(p, before);
    }

    #[test]
    fn copy_labels_copies_the_frame_part() {
        let src: Vec<u8> = (0..20).collect();
        let mut dst = vec![99u8; 3 * 4];
        copy_labels(&src, 5, 3, 3, &mut dst, 4);
        assert_eq!(dst, [0, 1, 2, 99, 5, 6, 7, 99, 10, 11, 12, 99]);
    }

    /// Straightforward reference: upsample every class, then take the argmax.
    fn naive_labels(logits: &[f32], classes: usize, lh: usize, lw: usize, ph: usize, pw: usize) -> Vec<u8> {
        let (sy, sx) = (lh as f32 / ph as f32, lw as f32 / pw as f32);
        let mut out = vec![0u8; ph * pw];
        for y in 0..ph {
            for x in 0..pw {
                let (y0, y1, ly) = AxisMap { offset: 0.0, scale: sy }.bilinear(y, lh);
                let (x0, x1, lx) = AxisMap { offset: 0.0, scale: sx }.bilinear(x, lw);
                let mut best = f32::NEG_INFINITY;
                for c in 0..classes {
                    let at = |yy: usize, xx: usize| logits[c * lh * lw + yy * lw + xx];
                    let v = (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x1))
                        + ly * ((1.0 - lx) * at(y1, x0) + lx * at(y1, x1));
                    if c == 0 || v > best {
                        best = v;
                        out[y * pw + x] = c as u8;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn logits_upsampling_by_hand() {
        // Class 0 is the bilinear ramp 2*ty + tx with ty, tx in {0, .25, .75, 1};
        // class 1 is 1.5. Ties go to class 0.
        let logits = [0.0, 1.0, 2.0, 3.0, 1.5, 1.5, 1.5, 1.5];
        let mut dst = vec![77u8; 4 * 4 + 1];
        logits_to_labels(&logits, 2, 2, 2, 4, 4, 4, 4, &mut dst);
        #[rustfmt::skip]
        assert_eq!(&dst[..16], &[
            1, 1, 1, 1, // ty = 0: 0, .25, .75, 1
            1, 1, 1, 0, // ty = .25: .5 + tx, ties with 1.5 at column 3
            0, 0, 0, 0, // ty = .75: 1.5 + tx, ties at column 0
            0, 0, 0, 0, // ty = 1
        ]);
        assert_eq!(dst[16], 77);
        // Only the top-left width x height is written.
        let mut dst = vec![77u8; 16];
        logits_to_labels(&logits, 2, 2, 2, 4, 4, 3, 2, &mut dst);
        #[rustfmt::skip]
        assert_eq!(dst, [
            1, 1, 1, 77,
            1, 1, 1, 77,
            77, 77, 77, 77,
            77, 77, 77, 77,
        ]);
    }

    #[test]
    fn smooth_logits_match_reference() {
        // Large class regions: most pixels take the corner-agreement shortcut.
        let (classes, lh, lw, ph, pw) = (7, 20, 70, 160, 560);
        let mut logits = vec![0.0f32; classes * lh * lw];
        for c in 0..classes {
            let (cx, cy) = ((c * 3 % 7) as f32 / 7.0, (c * 5 % 7) as f32 / 7.0);
            for y in 0..lh {
                for x in 0..lw {
                    let (dx, dy) = (x as f32 / lw as f32 - cx, y as f32 / lh as f32 - cy);
                    logits[(c * lh + y) * lw + x] = -(dx * dx + dy * dy);
                }
            }
        }
        let expect = naive_labels(&logits, classes, lh, lw, ph, pw);
        let mut dst = vec![0u8; ph * pw];
        logits_to_labels(&logits, classes, lh, lw, ph, pw, pw - 5, ph - 3, &mut dst);
        for y in 0..ph - 3 {
            assert_eq!(dst[y * pw..y * pw + pw - 5], expect[y * pw..y * pw + pw - 5], "row {y}");
        }
        let distinct = (0..classes as u8).filter(|c| expect.contains(c)).count();
        assert!(distinct >= 5, "{distinct}");
    }

    #[test]
    fn logits_match_reference() {
        let to_f = |b: &[u8]| b.iter().map(|&v| f32::from(v) / 17.0).collect::<Vec<f32>>();
        for (classes, lh, lw, ph, pw) in [
            (3, 4, 5, 16, 20),
            (19, 8, 80, 32, 320), // wider than one column chunk
            (4, 3, 3, 7, 5),      // non-integer scales
            (5, 6, 300, 6, 300),  // same size
            (1, 2, 2, 4, 4),
            (2, 5, 5, 3, 2), // downsampling
        ] {
            let logits = to_f(&noise(classes * lh * lw, classes as u32));
            let expect = naive_labels(&logits, classes, lh, lw, ph, pw);
            let mut dst = vec![0u8; ph * pw];
            logits_to_labels(&logits, classes, lh, lw, ph, pw, pw, ph, &mut dst);
            assert_eq!(dst, expect, "{classes} {lh}x{lw} -> {ph}x{pw}");
            let (w, h) = (pw - pw / 3, ph - ph / 4);
            let mut part = vec![200u8; ph * pw];
            logits_to_labels(&logits, classes, lh, lw, ph, pw, w, h, &mut part);
            for y in 0..ph {
                for x in 0..pw {
                    let e = if y < h && x < w { expect[y * pw + x] } else { 200 };
                    assert_eq!(part[y * pw + x], e);
                }
            }
        }
    }
    /// Blending bytes in place gives exactly what the planar path (unpack, blend,
    /// pack) gives, for every packed format, byte value and a range of alphas; and
    /// it rounds the exact blend to the nearest byte (either neighbour on a tie).
    #[test]
    fn blend_frame_matches_the_planar_path_bit_for_bit() {
        let palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 77]];
        let (w, h) = (37, 9);
        let lstride = w + 3;
        let labels: Vec<u8> = (0..lstride * h)
            .map(|i| match i % 7 {
                6 => 255,
                k => (k % 5) as u8, // 4 is outside the palette too
            })
            .collect();
        for &format in &PixelFormat::ALL[..10] {
            let mut layout = FrameLayout::packed(format, w, h);
            layout.strides[0] += 8; // padding that must stay untouched
            layout.offsets[0] = 5;
            layout.size = layout.offsets[0] + layout.strides[0] * h;
            let bpp = format.bytes_per_pixel().unwrap();
            let x_byte = match format {
                PixelFormat::Xrgb | PixelFormat::Argb | PixelFormat::Xbgr | PixelFormat::Abgr => Some(0),
                PixelFormat::Rgb | PixelFormat::Bgr => None,
                _ => Some(3),
            };
            let mut src: Vec<u8> = (0..layout.size).map(|i| (i * 7 + i / 251) as u8).collect();
            // x/alpha bytes at 255, as planar_to_frame writes them.
            for y in 0..h {
                for x in 0..w {
                    if let Some(xb) = x_byte {
                        src[layout.offsets[0] + y * layout.strides[0] + x * bpp + xb] = 255;
                    }
                }
            }
            for alpha in [0.0f32, 0.1, 0.25, 0.5, 0.7, 1.0] {
                let mut planar = vec![0.0; planar_len(w, h)];
                frame_to_planar(&src, &layout, &mut planar, w, h).unwrap();
                blend_labels(&mut planar, w, h, w, h, &labels, lstride, &palette[..3], alpha);
                let mut want = src.clone();
                planar_to_frame(&planar, w, h, &layout, &mut want).unwrap();
                let mut got = src.clone();
                blend_labels_frame(&mut got, &layout, &labels, lstride, &palette[..3], alpha).unwrap();
                assert_eq!(got, want, "{format} alpha {alpha}");
                // Independent check against the exact value.
                let ch = |c: usize| match (format, c) {
                    (PixelFormat::Rgb | PixelFormat::Rgbx | PixelFormat::Rgba, c) => c,
                    (PixelFormat::Bgr | PixelFormat::Bgrx | PixelFormat::Bgra, c) => 2 - c,
                    (PixelFormat::Xrgb | PixelFormat::Argb, c) => c + 1,
                    (_, c) => 3 - c,
                };
                for y in 0..h {
                    for x in 0..w {
                        let l = usize::from(labels[y * lstride + x]);
                        for c in 0..3 {
                            let i = layout.offsets[0] + y * layout.strides[0] + x * bpp + ch(c);
                            let v = f64::from(src[i]);
                            let exact = match palette[..3].get(l) {
                                Some(col) => (1.0 - f64::from(alpha)) * v + f64::from(alpha) * f64::from(col[c]),
                                None => v,
                            };
                            let g = f64::from(got[i]);
                            assert!(
                                (g - exact).abs() < 0.5 + 1e-4,
                                "{format} alpha {alpha} ({x},{y}) c{c}: {g} vs {exact}"
                            );
                        }
                    }
                }
            }
            // Padding and the bytes before the frame are untouched.
            let mut got = src.clone();
            blend_labels_frame(&mut got, &layout, &labels, lstride, &palette, 0.5).unwrap();
            assert_eq!(got[..5], src[..5]);
            for y in 0..h {
                let e = layout.offsets[0] + y * layout.strides[0] + w * bpp;
                assert_eq!(got[e..e + 8], src[e..e + 8], "{format} padding of row {y}");
            }
        }
    }

    #[test]
    fn blend_frame_leaves_x_bytes_and_refuses_bad_input() {
        let layout = FrameLayout::packed(PixelFormat::Bgrx, 2, 1);
        let mut px = [100u8, 100, 100, 7, 100, 100, 100, 9];
        blend_labels_frame(&mut px, &layout, &[0, 1], 2, &[[255, 0, 0], [0, 0, 255]], 1.0).unwrap();
        assert_eq!(px, [0, 0, 255, 7, 255, 0, 0, 9]);
        // Label map too small, stride below width, YUV, frame too small.
        assert!(blend_labels_frame(&mut px, &layout, &[0], 2, &[], 0.5).is_err());
        assert!(blend_labels_frame(&mut px, &layout, &[0, 0, 0], 1, &[], 0.5).is_err());
        let yuv = FrameLayout::packed(PixelFormat::I420, 2, 2);
        let mut buf = vec![0u8; yuv.size];
        assert!(blend_labels_frame(&mut buf, &yuv, &[0; 4], 2, &[], 0.5).is_err());
        assert!(outline_labels_frame(&mut buf, &yuv, &[0; 4], 2, &[]).is_err());
        assert!(blend_labels_frame(&mut px[..7], &layout, &[0, 1], 2, &[], 0.5).is_err());
    }

    #[test]
    fn outline_draws_one_pixel_boundaries_in_the_class_colour() {
        // Labels (4x3):   0 0 1 1
        //                 0 0 1 1
        //                 2 2 2 255
        let labels = [0u8, 0, 1, 1, 9, 0, 0, 1, 1, 9, 2, 2, 2, 255, 9];
        let palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];
        let layout = FrameLayout::packed(PixelFormat::Rgb, 4, 3);
        let mut frame = vec![50u8; layout.size];
        outline_labels_frame(&mut frame, &layout, &labels, 5, &palette).unwrap();
        let at = |x: usize, y: usize| &frame[y * layout.strides[0] + x * 3..][..3];
        let grey = [50u8, 50, 50];
        // Row 0: only the 0|1 edge, painted in the right pixel's class (green).
        assert_eq!(
            [at(0, 0), at(1, 0), at(2, 0), at(3, 0)],
            [&grey, &grey, &[0, 255, 0], &grey]
        );
        assert_eq!(
            [at(0, 1), at(1, 1), at(2, 1), at(3, 1)],
            [&grey, &grey, &[0, 255, 0], &grey]
        );
        // Row 2 differs from row 1 everywhere; label 255 has no colour.
        assert_eq!(
            [at(0, 2), at(1, 2), at(2, 2), at(3, 2)],
            [&[0, 0, 255], &[0, 0, 255], &[0, 0, 255], &grey]
        );
        // Stride padding untouched.
        assert!(frame[12..layout.strides[0]].iter().all(|&b| b == 50));
    }
}
