//! The per-frame hot path: conversions between raw frames (packed RGB family,
//! I420, NV12) and planar RGB f32 images, label colouring and logits upsampling.
//!
//! "Planar" means an RGB float32 image `[3, ph, pw]` with values in [0,1], row-major
//! with rows of exactly `pw` floats; the frame occupies the top-left
//! `width`×`height`, with `pw >= width` and `ph >= height`.
//!
//! None of these functions allocates. Rows are walked with fixed-size chunks so that
//! the inner loops carry no bounds checks.
//!
//! The files: `planar` (frames to planar RGB and back), `blend` (class colours and
//! outlines over an image), `copy` (checked copies of model outputs and label maps),
//! `logits` (class maps from logits); this one holds the helpers they share.
mod blend;
mod copy;
mod logits;
mod planar;

pub use blend::{blend_labels, blend_labels_frame, outline_labels_frame};
pub use copy::{copy_class_ids, copy_finite, copy_labels, copy_logits};
pub use logits::{logits_to_labels, logits_to_labels_mapped};
pub use planar::{copy_alpha, frame_to_planar, planar_to_frame};

use crate::frame::FrameLayout;
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

#[cfg(test)]
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
