//! The bench's inputs: a few deterministic noisy street-like frames, as 8-bit RGB for
//! the pipeline and as the padded tensors the bare loop feeds its session.
use anyhow::Result;

use denoiseseg::convert;
use denoiseseg::frame::{FrameLayout, PixelFormat};
use denoiseseg::model::ModelSpec;
use denoiseseg::noise::{add_noise_interleaved, NoiseParams, SigmaEstimator};
use denoiseseg::tensors::Tensors;

/// Distinct input frames, cycled.
const DISTINCT_FRAMES: usize = 4;
/// Seed of the input noise.
const NOISE_SEED: u64 = 0x00BE_4C4D;

/// The same frames for both parts of every batch size.
pub struct Inputs {
    /// Packed RGB with GStreamer's default row stride, for appsrc.
    pub rgb: Vec<Vec<u8>>,
    /// The same frames converted, padded to the model's size multiple, with the sigma
    /// the element would feed, for the bare loop.
    pub tensors: Vec<Tensors>,
}

/// Makes the frames at `w`x`h` with Gaussian noise of `noise_sigma` (8-bit units);
/// `noise_level` is the element's (negative: estimated per frame, as the element does).
pub fn make(spec: &ModelSpec, (w, h): (usize, usize), noise_sigma: f32, noise_level: f64) -> Result<Inputs> {
    let m = spec.size_multiple.max(1);
    let layout = FrameLayout::packed(PixelFormat::Rgb, w, h);
    let noise = NoiseParams::gaussian(noise_sigma.max(0.0));
    let rgb: Vec<Vec<u8>> = (0..DISTINCT_FRAMES)
        .map(|i| {
            let mut f = pattern(&layout, i);
            add_noise_interleaved(
                &mut f,
                w,
                h,
                layout.strides[0],
                3,
                &[0, 1, 2],
                &noise,
                NOISE_SEED,
                i as u64,
            );
            f
        })
        .collect();
    let mut estimator = SigmaEstimator::new();
    let mut tensors = Vec::with_capacity(DISTINCT_FRAMES);
    for f in &rgb {
        let mut t = Tensors::default();
        t.set_size(w, h, m);
        convert::frame_to_planar(f, &layout, &mut t.image, t.pw, t.ph)?;
        t.sigma = if noise_level >= 0.0 {
            (noise_level / 255.0) as f32
        } else if spec.sigma_input.is_some() {
            estimator.estimate(&t.image, w, h, t.pw)
        } else {
            0.0
        };
        tensors.push(t);
    }
    Ok(Inputs { rgb, tensors })
}

/// A deterministic street-like RGB frame (sky, buildings, road with lane marks, a few
/// cars), packed with GStreamer's default row stride; `shift` moves the scene.
fn pattern(layout: &FrameLayout, shift: usize) -> Vec<u8> {
    let (w, h, stride) = (layout.width, layout.height, layout.strides[0]);
    let mut data = vec![0u8; layout.size];
    let horizon = h * 2 / 5;
    for y in 0..h {
        for x in 0..w {
            let xs = x + shift * 7;
            let fy = y as f32 / h as f32;
            let rgb: [f32; 3] = if y < horizon {
                // Sky gradient, with building blocks rising into it.
                let block = (xs / (w / 8).max(1)) % 4;
                let top = horizon as f32 * (0.25 + 0.15 * block as f32);
                if (y as f32) > top {
                    let win = (xs / 6).is_multiple_of(3) && (y / 8).is_multiple_of(2);
                    let g = 60.0 + 25.0 * block as f32 + if win { 70.0 } else { 0.0 };
                    [g, g, g + 10.0]
                } else {
                    [70.0 + 60.0 * fy, 130.0 + 50.0 * fy, 180.0 + 40.0 * fy]
                }
            } else {
                let lane = (xs / 24).is_multiple_of(4) && (y - horizon) % 16 < 3 && x.abs_diff(w / 2) < w / 40 + 2;
                let car = (xs / (w / 5).max(1)) % 3 == 1 && y < horizon + (h - horizon) / 3;
                if lane {
                    [235.0, 235.0, 230.0]
                } else if car {
                    [20.0, 30.0, 140.0 + 40.0 * fy]
                } else {
                    let t = 8.0 * ((x as f32 * 0.11).sin() * (y as f32 * 0.07).cos());
                    [128.0 + t, 64.0 + t, 128.0 + t]
                }
            };
            let o = y * stride + x * 3;
            for c in 0..3 {
                data[o + c] = rgb[c].clamp(0.0, 255.0) as u8;
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_deterministic_and_fills_the_frame() {
        let layout = FrameLayout::packed(PixelFormat::Rgb, 37, 21);
        let a = pattern(&layout, 1);
        assert_eq!(a, pattern(&layout, 1));
        assert_eq!(a.len(), layout.size);
        assert_ne!(a, pattern(&layout, 2));
    }
}
