//! Label colouring: class colours blended into a planar image or straight into a
//! frame (packed RGB family: bit-identical to the planar path; I420 and NV12: in
//! Y'CbCr, equal to it up to rounding), and class outlines drawn over a frame.
use super::planar::Yuv;
use super::{planar_len, round_u8, to_u8, INV255};
use crate::frame::{FrameLayout, PixelFormat};
use crate::{Error, Result};

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
    check_labels(data_len, layout, labels_len, labels_stride)
}

/// Checks a frame of `data_len` bytes and a label map of `labels_len` bytes (rows of
/// `labels_stride`) covering it.
fn check_labels(data_len: usize, layout: &FrameLayout, labels_len: usize, labels_stride: usize) -> Result<()> {
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

/// Blends class colours over a frame in place. `labels`: row-major, row stride
/// `labels_stride`, covering the frame; labels outside the palette (e.g. 255), x/alpha
/// bytes and stride padding are untouched.
///
/// - Packed RGB family (RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB, ABGR):
///   each colour byte `v` of a pixel whose label < palette.len() becomes
///   round(((1−alpha)·v/255 + alpha·colour/255)·255), computed in f32 exactly as
///   [`frame_to_planar`](super::frame_to_planar), [`blend_labels`] and
///   [`planar_to_frame`](super::planar_to_frame) compute it, so both paths give the
///   same bytes (halves round to even).
/// - I420 and NV12: the same blend in the frame's Y'CbCr (its matrix and range). The
///   conversion is affine, so this is the planar path's result up to rounding (±1):
///   luma per pixel, chroma as the mean of the blend over each 2x2 block.
///
/// Errors for a layout that does not fit `dst`, or a label map too small for the frame.
pub fn blend_labels_frame(
    dst: &mut [u8],
    layout: &FrameLayout,
    labels: &[u8],
    labels_stride: usize,
    palette: &[[u8; 3]],
    alpha: f32,
) -> Result<()> {
    if layout.format.is_yuv() {
        check_labels(dst.len(), layout, labels.len(), labels_stride)?;
        let nv12 = layout.format == PixelFormat::Nv12;
        blend_yuv420(dst, layout, labels, labels_stride, palette, alpha, nv12);
        return Ok(());
    }
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

/// [`blend_labels_frame`] for I420 (`nv12` false) and NV12, on a checked layout.
fn blend_yuv420(
    dst: &mut [u8],
    layout: &FrameLayout,
    labels: &[u8],
    labels_stride: usize,
    palette: &[[u8; 3]],
    alpha: f32,
    nv12: bool,
) {
    // Per label: the factor on the code value and the (Y, U, V) terms added.
    let k = Yuv::new(layout.matrix, layout.full_range);
    let mut keep = [1.0f32; 256];
    let mut add = [[0.0f32; 3]; 256];
    for ((kp, a), c) in keep.iter_mut().zip(add.iter_mut()).zip(palette) {
        *kp = 1.0 - alpha;
        let code = k.code(
            f32::from(c[0]) * INV255,
            f32::from(c[1]) * INV255,
            f32::from(c[2]) * INV255,
        );
        *a = code.map(|v| alpha * v);
    }
    let (w, h) = (layout.width, layout.height);
    let (off, stride) = (layout.offsets[0], layout.strides[0]);
    for y in 0..h {
        let row = &mut dst[off + y * stride..off + y * stride + w];
        for (p, &l) in row.iter_mut().zip(&labels[y * labels_stride..y * labels_stride + w]) {
            let l = usize::from(l);
            *p = round_u8(keep[l] * f32::from(*p) + add[l][0]);
        }
    }
    for cy in 0..h.div_ceil(2) {
        for cx in 0..w.div_ceil(2) {
            // The mean over the block's pixels of keep·c + add, with c the block's chroma.
            let (mut kk, mut au, mut av, mut n) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
            for y in 2 * cy..(2 * cy + 2).min(h) {
                for x in 2 * cx..(2 * cx + 2).min(w) {
                    let l = usize::from(labels[y * labels_stride + x]);
                    kk += keep[l];
                    au += add[l][1];
                    av += add[l][2];
                    n += 1.0;
                }
            }
            let mix = |c: u8, a: f32| round_u8((kk * f32::from(c) + a) / n);
            let (iu, iv) = if nv12 {
                let i = layout.offsets[1] + cy * layout.strides[1] + 2 * cx;
                (i, i + 1)
            } else {
                (
                    layout.offsets[1] + cy * layout.strides[1] + cx,
                    layout.offsets[2] + cy * layout.strides[2] + cx,
                )
            };
            dst[iu] = mix(dst[iu], au);
            dst[iv] = mix(dst[iv], av);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{frame_to_planar, planar_to_frame};

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
    fn yuv_blend_is_the_planar_path_up_to_rounding() {
        use crate::frame::YuvMatrix;
        let palette = [[128u8, 64, 128], [70, 130, 180], [220, 20, 60], [250, 250, 10]];
        // Odd sizes: the last chroma column and row cover one pixel wide or high.
        let (w, h) = (13usize, 7usize);
        let labels: Vec<u8> = (0..w * h).map(|i| [0u8, 1, 2, 3, 255][(i * 7 + i / w) % 5]).collect();
        for format in [PixelFormat::I420, PixelFormat::Nv12] {
            for (matrix, full) in [(YuvMatrix::Bt601, false), (YuvMatrix::Bt709, true)] {
                let layout = FrameLayout::packed(format, w, h).with_colorimetry(matrix, full);
                // A smooth frame, so chroma subsampling loses little.
                let mut rgb = vec![0f32; 3 * w * h];
                for (i, v) in rgb.iter_mut().enumerate() {
                    let (c, p) = (i / (w * h), i % (w * h));
                    *v = 0.2 + 0.05 * c as f32 + 0.3 * (p % w) as f32 / w as f32 + 0.2 * (p / w) as f32 / h as f32;
                }
                let mut frame = vec![0u8; layout.size];
                planar_to_frame(&rgb, w, h, &layout, &mut frame).unwrap();
                let mut planar = vec![0f32; 3 * w * h];
                frame_to_planar(&frame, &layout, &mut planar, w, h).unwrap();
                blend_labels(&mut planar, w, h, w, h, &labels, w, &palette, 0.6);
                let mut want = vec![0u8; layout.size];
                planar_to_frame(&planar, w, h, &layout, &mut want).unwrap();
                let mut got = frame.clone();
                blend_labels_frame(&mut got, &layout, &labels, w, &palette, 0.6).unwrap();
                let worst = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
                assert!(worst <= 2, "{format} {matrix:?}: off by {worst}");
                // Outside the palette (255) the luma is untouched.
                for (i, &l) in labels.iter().enumerate() {
                    if l == 255 {
                        let at = layout.offsets[0] + (i / w) * layout.strides[0] + i % w;
                        assert_eq!(got[at], frame[at]);
                    }
                }
            }
        }
    }

    #[test]
    fn blend_frame_leaves_x_bytes_and_refuses_bad_input() {
        let layout = FrameLayout::packed(PixelFormat::Bgrx, 2, 1);
        let mut px = [100u8, 100, 100, 7, 100, 100, 100, 9];
        blend_labels_frame(&mut px, &layout, &[0, 1], 2, &[[255, 0, 0], [0, 0, 255]], 1.0).unwrap();
        assert_eq!(px, [0, 0, 255, 7, 255, 0, 0, 9]);
        // Label map too small, stride below width, outlines on YUV, frame too small.
        assert!(blend_labels_frame(&mut px, &layout, &[0], 2, &[], 0.5).is_err());
        assert!(blend_labels_frame(&mut px, &layout, &[0, 0, 0], 1, &[], 0.5).is_err());
        let yuv = FrameLayout::packed(PixelFormat::I420, 2, 2);
        let mut buf = vec![0u8; yuv.size];
        assert!(blend_labels_frame(&mut buf, &yuv, &[0; 3], 2, &[], 0.5).is_err());
        assert!(blend_labels_frame(&mut buf[..5], &yuv, &[0; 4], 2, &[], 0.5).is_err());
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
