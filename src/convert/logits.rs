//! Class maps from logits: bilinear upsampling (PyTorch's `align_corners=False`)
//! and the per-pixel argmax, with a shortcut away from class boundaries.
use crate::preprocess::{AxisMap, Placement};

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
    use crate::convert::noise;

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
}
