//! Raw frames (packed RGB family, I420, NV12) to planar RGB f32 and back, with
//! the YUV matrices and edge replication into the padding.
use super::{check_planar, clamp01, round_u8, to_u8, INV255};
use crate::frame::{FrameLayout, PixelFormat, YuvMatrix};
use crate::{Error, Result};

/// YUV <-> RGB coefficients for one matrix and range, on the [0,1] RGB scale.
#[derive(Clone, Copy, Debug)]
pub(super) struct Yuv {
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
    pub(super) fn new(matrix: YuvMatrix, full_range: bool) -> Yuv {
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

    /// The (Y, U, V) code values of an RGB colour in [0,1], unrounded.
    pub(super) fn code(&self, r: f32, g: f32, b: f32) -> [f32; 3] {
        let l = self.kr * r + self.kg * g + self.kb * b;
        [
            self.y_off + self.y_scale * l,
            128.0 + self.c_scale * (b - l) / self.bu,
            128.0 + self.c_scale * (r - l) / self.rv,
        ]
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
/// (clamped to [0,1], rounded). Alpha bytes of formats with alpha are set to 255 (see
/// [`copy_alpha`] to keep the input's), x bytes to 255 too. Bytes outside the planes' rows (stride padding) are untouched.
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

/// Copies the alpha byte of every pixel of `src` (a frame of `src_layout`) into `dst` (a
/// frame of `dst_layout`, the same format and size, its stride its own), so that a
/// frame written by [`planar_to_frame`] keeps its input's transparency. Formats without
/// alpha: nothing to do.
pub fn copy_alpha(src: &[u8], src_layout: &FrameLayout, dst: &mut [u8], dst_layout: &FrameLayout) -> Result<()> {
    let a = match src_layout.format {
        PixelFormat::Rgba | PixelFormat::Bgra => 3,
        PixelFormat::Argb | PixelFormat::Abgr => 0,
        _ => return Ok(()),
    };
    if (src_layout.format, src_layout.width, src_layout.height)
        != (dst_layout.format, dst_layout.width, dst_layout.height)
    {
        return Err(Error::Frame(format!(
            "alpha of a {} {}x{} frame into a {} {}x{} one",
            src_layout.format,
            src_layout.width,
            src_layout.height,
            dst_layout.format,
            dst_layout.width,
            dst_layout.height
        )));
    }
    src_layout.validate(src.len())?;
    dst_layout.validate(dst.len())?;
    let w = src_layout.width;
    for y in 0..src_layout.height {
        let s = src_layout.offsets[0] + y * src_layout.strides[0];
        let d = dst_layout.offsets[0] + y * dst_layout.strides[0];
        let (from, _) = src[s..s + 4 * w].as_chunks::<4>();
        let (to, _) = dst[d..d + 4 * w].as_chunks_mut::<4>();
        for (to, from) in to.iter_mut().zip(from) {
            to[a] = from[a];
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{noise, planar_len};

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
    fn alpha_is_copied_between_strides_and_nothing_else_changes() {
        for f in packed_formats() {
            let (w, h) = (3, 2);
            let src_layout = FrameLayout::packed(f, w, h);
            let src: Vec<u8> = (0..src_layout.size).map(|i| (i * 7 + 1) as u8).collect();
            // The output with 4 more bytes a row than the input.
            let mut dst_layout = src_layout.clone();
            dst_layout.strides[0] += 4;
            dst_layout.size = dst_layout.strides[0] * h;
            let mut dst = vec![0x55u8; dst_layout.size];
            copy_alpha(&src, &src_layout, &mut dst, &dst_layout).unwrap();
            let alpha = f.name().find('A');
            for (i, &got) in dst.iter().enumerate() {
                let (y, x) = (i / dst_layout.strides[0], i % dst_layout.strides[0]);
                let want = match alpha {
                    Some(a) if x < 4 * w && x % 4 == a => src[y * src_layout.strides[0] + x],
                    _ => 0x55,
                };
                assert_eq!(got, want, "{f} row {y} byte {x}");
            }
        }
        let a = FrameLayout::packed(PixelFormat::Rgba, 2, 2);
        let b = FrameLayout::packed(PixelFormat::Rgba, 2, 3);
        assert!(copy_alpha(&[0; 16], &a, &mut [0; 24], &b).is_err(), "sizes must agree");
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
}
