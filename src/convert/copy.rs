//! Checked copies: model outputs copied with non-finite values, NaN logits or
//! out-of-range class ids replaced (and counted), and label maps copied into frames.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::logits_to_labels;

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

    #[test]
    fn copy_labels_copies_the_frame_part() {
        let src: Vec<u8> = (0..20).collect();
        let mut dst = vec![99u8; 3 * 4];
        copy_labels(&src, 5, 3, 3, &mut dst, 4);
        assert_eq!(dst, [0, 1, 2, 99, 5, 6, 7, 99, 10, 11, 12, 99]);
    }
}
