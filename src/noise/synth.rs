//! Noise synthesis: the noise models ([`NoiseKind`], [`NoiseParams`]) and
//! [`add_noise_interleaved`], Gaussian or Poisson-Gaussian, white or spatially
//! correlated, added in place to interleaved 8-bit samples.
use super::random::NoiseSource;

/// The kind of noise [`add_noise_interleaved`] synthesizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NoiseKind {
    /// Signal-independent additive white Gaussian noise of standard deviation
    /// [`NoiseParams::sigma`].
    #[default]
    Gaussian,
    /// Signal-dependent sensor noise: photon shot noise (Poisson) plus Gaussian read
    /// noise. See [`NoiseParams::gain`].
    PoissonGaussian,
}

/// Parameters of the synthesized noise, all in 8-bit units (0..255 sample values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseParams {
    pub kind: NoiseKind,
    /// Standard deviation of the additive Gaussian noise (the read noise for
    /// [`NoiseKind::PoissonGaussian`]), in 8-bit units. Negative or NaN counts as 0.
    pub sigma: f32,
    /// Photon-shot scale of [`NoiseKind::PoissonGaussian`], in 8-bit units per
    /// photo-electron: a sample of clean value `v` is `gain * Poisson(v / gain)`, so
    /// its shot-noise variance is `gain * v` (standard deviation `sqrt(gain * v)`; at
    /// `gain = 1` and mid grey 128 that is about 11.3). The total variance is
    /// `sigma² + gain * v`. Low photon counts (`v / gain < 20`) are drawn exactly
    /// from the Poisson law; higher ones from its Gaussian approximation. 0 means no
    /// shot noise. Ignored by [`NoiseKind::Gaussian`]; negative or NaN counts as 0.
    pub gain: f32,
    /// Spatial correlation of the noise, as a camera's demosaicing and ISP leave it:
    /// the standard deviation in pixels of the Gaussian kernel the noise field is
    /// filtered with (separably, over at most 3 pixels each way, and rescaled so each
    /// sample keeps its standard deviation). 0, negative or NaN: white noise. With a
    /// correlation, shot noise is drawn from its Gaussian approximation (variance
    /// `gain * v`) also at low photon counts.
    pub correlation: f32,
}

impl Default for NoiseParams {
    fn default() -> Self {
        NoiseParams {
            kind: NoiseKind::Gaussian,
            sigma: 25.0,
            gain: 1.0,
            correlation: 0.0,
        }
    }
}

impl NoiseParams {
    /// Gaussian noise of standard deviation `sigma` (8-bit units).
    pub fn gaussian(sigma: f32) -> Self {
        NoiseParams {
            kind: NoiseKind::Gaussian,
            sigma,
            gain: 0.0,
            correlation: 0.0,
        }
    }

    /// Poisson-Gaussian noise: read noise `sigma` and shot-noise scale `gain`.
    pub fn poisson_gaussian(sigma: f32, gain: f32) -> Self {
        NoiseParams {
            kind: NoiseKind::PoissonGaussian,
            sigma,
            gain,
            correlation: 0.0,
        }
    }

    /// Whether these parameters leave every sample unchanged.
    pub fn is_identity(&self) -> bool {
        let sigma = nonneg(self.sigma);
        match self.kind {
            NoiseKind::Gaussian => sigma == 0.0,
            NoiseKind::PoissonGaussian => sigma == 0.0 && nonneg(self.gain) == 0.0,
        }
    }
}

/// `x` if it is a finite non-negative number, else 0.
fn nonneg(x: f32) -> f32 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        0.0
    }
}

/// Rounds half up and clamps to 0..=255, as a camera's ADC delivers it.
#[inline(always)]
fn quantize(x: f32) -> u8 {
    // `as` saturates, and the clamp keeps NaN-free inputs in range.
    (x.clamp(0.0, 255.0) + 0.5) as u8
}

/// Photon counts below this are drawn exactly from the Poisson law.
const EXACT_POISSON_BELOW: f32 = 20.0;

/// Per-value constants of the Poisson-Gaussian model, for one frame.
struct PoissonLut {
    /// `v / gain` (the mean photon count), per clean value.
    lambda: [f32; 256],
    /// `exp(-lambda)`, for the exact sampler.
    exp_neg_lambda: [f32; 256],
    /// `sqrt(gain * v)`, for the Gaussian approximation.
    shot_sd: [f32; 256],
}

impl PoissonLut {
    fn new(gain: f32) -> Self {
        let mut lut = PoissonLut {
            lambda: [0.0; 256],
            exp_neg_lambda: [1.0; 256],
            shot_sd: [0.0; 256],
        };
        if gain > 0.0 {
            for v in 0..256 {
                let lambda = v as f32 / gain;
                lut.lambda[v] = lambda;
                lut.exp_neg_lambda[v] = (-lambda).exp();
                lut.shot_sd[v] = (gain * v as f32).sqrt();
            }
        }
        lut
    }

    /// The shot-noise term (in 8-bit units, zero mean) for clean value `v`.
    #[inline(always)]
    fn shot(&self, v: u8, gain: f32, src: &mut NoiseSource<'_>) -> f32 {
        let i = v as usize;
        let lambda = self.lambda[i];
        if lambda <= 0.0 {
            0.0
        } else if lambda < EXACT_POISSON_BELOW {
            // Inversion by sequential search: about lambda steps on average.
            let u = src.uniform();
            let mut p = self.exp_neg_lambda[i];
            let mut cdf = p;
            let mut k = 0u32;
            while u > cdf && k < 200 {
                k += 1;
                p *= lambda / k as f32;
                cdf += p;
            }
            gain * k as f32 - v as f32
        } else {
            self.shot_sd[i] * src.normal()
        }
    }
}

/// Adds noise in place to interleaved 8-bit samples.
///
/// The frame is `height` rows of `stride` bytes; a row holds `width` pixels of
/// `pixel_stride` bytes, and the noisy samples of a pixel are at `channel_offsets`
/// within it (for RGBA `pixel_stride = 4` and `channel_offsets = [0, 1, 2]`; for
/// GRAY8 `1` and `[0]`). Other bytes (alpha, padding, row padding) are left
/// untouched. Results are rounded and clamped to 0..=255.
///
/// The noise is a pure function of `(seed, frame_index)` and the frame's layout:
/// the same pair gives bit-identical output, another `frame_index` gives
/// independent noise. Samples are drawn in row-major order, pixel by pixel, channel
/// by channel in the order of `channel_offsets`.
///
/// # Panics
/// If `channel_offsets` has an offset not below `pixel_stride`, if a row's pixels
/// do not fit in `stride`, or if `data` is shorter than the frame.
#[allow(clippy::too_many_arguments)]
pub fn add_noise_interleaved(
    data: &mut [u8],
    width: usize,
    height: usize,
    stride: usize,
    pixel_stride: usize,
    channel_offsets: &[usize],
    params: &NoiseParams,
    seed: u64,
    frame_index: u64,
) {
    if width == 0 || height == 0 || channel_offsets.is_empty() || params.is_identity() {
        return;
    }
    let max_offset = *channel_offsets.iter().max().expect("non-empty");
    assert!(
        max_offset < pixel_stride,
        "channel offset {max_offset} does not fit in a pixel of {pixel_stride} bytes"
    );
    let row_bytes = (width - 1) * pixel_stride + max_offset + 1;
    assert!(
        row_bytes <= stride,
        "{width} pixels of {pixel_stride} bytes do not fit in a row of {stride} bytes"
    );
    assert!(
        data.len() >= (height - 1) * stride + row_bytes,
        "frame of {} bytes is too short for {height} rows of stride {stride}",
        data.len()
    );

    let sigma = nonneg(params.sigma);
    let mut src = NoiseSource::new(seed, frame_index);
    if nonneg(params.correlation) > 0.0 {
        let layout = Interleaved {
            width,
            height,
            stride,
            pixel_stride,
            channel_offsets,
            row_bytes,
        };
        return add_correlated_noise(data, &layout, params, &mut src);
    }
    let rows = data.chunks_mut(stride).take(height);
    match params.kind {
        NoiseKind::Gaussian => {
            for row in rows {
                for px in row[..row_bytes].chunks_mut(pixel_stride) {
                    for &c in channel_offsets {
                        let v = px[c] as f32 + sigma * src.normal();
                        px[c] = quantize(v);
                    }
                }
            }
        }
        NoiseKind::PoissonGaussian => {
            let gain = nonneg(params.gain);
            let lut = PoissonLut::new(gain);
            for row in rows {
                for px in row[..row_bytes].chunks_mut(pixel_stride) {
                    for &c in channel_offsets {
                        let clean = px[c];
                        let shot = lut.shot(clean, gain, &mut src);
                        let read = if sigma > 0.0 { sigma * src.normal() } else { 0.0 };
                        px[c] = quantize(clean as f32 + shot + read);
                    }
                }
            }
        }
    }
}

/// Where the noisy samples of an interleaved frame are (see [`add_noise_interleaved`]).
struct Interleaved<'a> {
    width: usize,
    height: usize,
    stride: usize,
    pixel_stride: usize,
    channel_offsets: &'a [usize],
    /// Bytes of a row that hold noisy samples.
    row_bytes: usize,
}

/// Largest radius, in pixels, of the correlation kernel.
const MAX_CORRELATION_RADIUS: usize = 3;

/// The taps of a 1-D Gaussian of standard deviation `std` pixels (radius
/// `ceil(2 std)`, at most [`MAX_CORRELATION_RADIUS`]), scaled so that their squares
/// sum to 1: white noise filtered with them along both axes keeps its variance.
fn correlation_taps(std: f32) -> Vec<f32> {
    let radius = ((2.0 * std).ceil() as usize).clamp(1, MAX_CORRELATION_RADIUS) as isize;
    let taps: Vec<f32> = (-radius..=radius)
        .map(|k| (-((k * k) as f32) / (2.0 * std * std)).exp())
        .collect();
    let norm = taps.iter().map(|t| t * t).sum::<f32>().sqrt();
    taps.into_iter().map(|t| t / norm).collect()
}

thread_local! {
    /// Rows of unit noise for [`add_correlated_noise`], kept per thread so that a
    /// stream allocates them once.
    static CORRELATED_ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`add_noise_interleaved`] with spatially correlated noise: unit normal noise, drawn
/// in row-major order over the frame and a margin of the kernel's radius, is filtered
/// horizontally as each row is drawn and vertically over a ring of rows, then scaled by
/// each sample's standard deviation (`sigma`, or `sqrt(gain * v + sigma²)`).
fn add_correlated_noise(data: &mut [u8], f: &Interleaved<'_>, params: &NoiseParams, src: &mut NoiseSource<'_>) {
    let taps = correlation_taps(nonneg(params.correlation));
    let r = taps.len() / 2;
    let channels = f.channel_offsets.len();
    let n = f.width * channels;
    let sigma = nonneg(params.sigma);
    let gain = match params.kind {
        NoiseKind::Gaussian => 0.0,
        NoiseKind::PoissonGaussian => nonneg(params.gain),
    };
    CORRELATED_ROWS.with_borrow_mut(|scratch| {
        // A ring of 2r + 1 horizontally filtered rows, a raw row with margins, and the
        // vertically filtered row.
        let ring_len = (2 * r + 1) * n;
        let raw_len = (f.width + 2 * r) * channels;
        scratch.resize(ring_len + raw_len + n, 0.0);
        let (ring, rest) = scratch.split_at_mut(ring_len);
        let (raw, out) = rest.split_at_mut(raw_len);
        // Draws the next row of unit noise (the frame's width plus the margins) and
        // stores it, filtered horizontally, in ring slot `slot`.
        let mut draw = |slot: &mut [f32]| {
            for v in raw.iter_mut() {
                *v = src.normal();
            }
            for (x, px) in slot.chunks_exact_mut(channels).enumerate() {
                for (c, v) in px.iter_mut().enumerate() {
                    *v = taps
                        .iter()
                        .enumerate()
                        .map(|(k, t)| t * raw[(x + k) * channels + c])
                        .sum();
                }
            }
        };
        // Rows -r .. r of the frame first (rows above and below it are margins).
        for slot in ring.chunks_exact_mut(n) {
            draw(slot);
        }
        for (y, row) in data.chunks_mut(f.stride).take(f.height).enumerate() {
            // Ring slot (y + k) mod (2r + 1) holds frame row y - r + k.
            out.fill(0.0);
            for (k, t) in taps.iter().enumerate() {
                let slot = &ring[((y + k) % (2 * r + 1)) * n..][..n];
                for (o, v) in out.iter_mut().zip(slot) {
                    *o += t * v;
                }
            }
            for (px, noise) in row[..f.row_bytes]
                .chunks_mut(f.pixel_stride)
                .zip(out.chunks_exact(channels))
            {
                for (&c, &z) in f.channel_offsets.iter().zip(noise) {
                    let clean = px[c] as f32;
                    let sd = (gain * clean + sigma * sigma).sqrt();
                    px[c] = quantize(clean + sd * z);
                }
            }
            // Row y - r is done with: its slot takes row y + r + 1.
            draw(&mut ring[(y % (2 * r + 1)) * n..][..n]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::std_of;

    #[test]
    fn gaussian_noise_has_requested_std() {
        let (w, h) = (256, 256);
        for sigma in [2.0f32, 10.0, 25.0] {
            let mut data = vec![128u8; w * h * 3];
            add_noise_interleaved(
                &mut data,
                w,
                h,
                w * 3,
                3,
                &[0, 1, 2],
                &NoiseParams::gaussian(sigma),
                7,
                0,
            );
            let (mean, sd) = std_of(data.iter().map(|&v| v as f64));
            // Rounding adds 1/12 of variance.
            let want = ((sigma * sigma) as f64 + 1.0 / 12.0).sqrt();
            assert!((mean - 128.0).abs() < 0.1, "sigma {sigma}: mean {mean}");
            assert!((sd / want - 1.0).abs() < 0.02, "sigma {sigma}: sd {sd}, want {want}");
        }
    }

    #[test]
    fn poisson_gaussian_noise_has_requested_variance() {
        let (w, h) = (256, 256);
        for (sigma, gain, value) in [(5.0f32, 1.0f32, 128u8), (2.0, 4.0, 40), (0.0, 2.0, 100)] {
            let mut data = vec![value; w * h];
            let params = NoiseParams::poisson_gaussian(sigma, gain);
            add_noise_interleaved(&mut data, w, h, w, 1, &[0], &params, 3, 9);
            let (mean, sd) = std_of(data.iter().map(|&v| v as f64));
            let want = ((sigma * sigma + gain * value as f32) as f64 + 1.0 / 12.0).sqrt();
            assert!((mean - value as f64).abs() < 0.15, "{sigma}/{gain}: mean {mean}");
            assert!((sd / want - 1.0).abs() < 0.03, "{sigma}/{gain}: sd {sd}, want {want}");
        }
        // Exact Poisson at low counts: gain 8 at value 16 is 2 photons on average,
        // so the output only takes multiples of 8.
        let mut data = vec![16u8; 4096];
        let params = NoiseParams::poisson_gaussian(0.0, 8.0);
        add_noise_interleaved(&mut data, 64, 64, 64, 1, &[0], &params, 1, 1);
        assert!(data.iter().all(|&v| v % 8 == 0 || v == 255));
        let zeros = data.iter().filter(|&&v| v == 0).count() as f64 / 4096.0;
        assert!((zeros - (-2.0f64).exp()).abs() < 0.03, "P(0) {zeros}");
    }

    /// Lag-1 correlation of a noise field (values minus `mean`) along rows and down
    /// columns of a `w`-wide single-channel frame.
    fn lag1_correlation(data: &[u8], w: usize, mean: f64) -> (f64, f64) {
        let v: Vec<f64> = data.iter().map(|&x| x as f64 - mean).collect();
        let var = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
        let h = v.len() / w;
        let (mut sx, mut nx, mut sy, mut ny) = (0.0, 0.0, 0.0, 0.0);
        for y in 0..h {
            for x in 0..w {
                if x + 1 < w {
                    sx += v[y * w + x] * v[y * w + x + 1];
                    nx += 1.0;
                }
                if y + 1 < h {
                    sy += v[y * w + x] * v[(y + 1) * w + x];
                    ny += 1.0;
                }
            }
        }
        (sx / nx / var, sy / ny / var)
    }

    #[test]
    fn correlated_noise_keeps_its_level_and_correlates_neighbours_as_the_kernel_says() {
        let (w, h) = (256, 256);
        let noisy = |p: NoiseParams| {
            let mut d = vec![128u8; w * h];
            add_noise_interleaved(&mut d, w, h, w, 1, &[0], &p, 3, 0);
            d
        };
        for corr in [0.5f32, 0.8, 1.5] {
            let d = noisy(NoiseParams {
                correlation: corr,
                ..NoiseParams::gaussian(10.0)
            });
            let (mean, sd) = std_of(d.iter().map(|&v| v as f64));
            assert!((mean - 128.0).abs() < 0.3, "correlation {corr}: mean {mean}");
            assert!((sd - 10.0).abs() < 0.3, "correlation {corr}: sd {sd}");
            // Separable filtering: the lag-1 correlation along either axis is the
            // taps' own lag-1 autocorrelation (their squares sum to 1).
            let taps = correlation_taps(corr);
            let want: f64 = taps.windows(2).map(|t| (t[0] * t[1]) as f64).sum();
            let (cx, cy) = lag1_correlation(&d, w, mean);
            assert!(
                (cx - want).abs() < 0.03 && (cy - want).abs() < 0.03,
                "{corr}: {cx:.3} {cy:.3} for {want:.3}"
            );
        }
        let (cx, cy) = lag1_correlation(&noisy(NoiseParams::gaussian(10.0)), w, 128.0);
        assert!(cx.abs() < 0.02 && cy.abs() < 0.02, "white: {cx:.3} {cy:.3}");
    }

    #[test]
    fn correlated_camera_noise_has_the_signal_dependent_variance_and_is_reproducible() {
        let (w, h) = (128, 128);
        let p = NoiseParams {
            correlation: 0.7,
            ..NoiseParams::poisson_gaussian(4.0, 2.0)
        };
        let run = |level: u8, seed, frame| {
            // RGBx: the fourth byte is padding and stays.
            let mut d = vec![level; w * h * 4];
            add_noise_interleaved(&mut d, w, h, w * 4, 4, &[0, 1, 2], &p, seed, frame);
            d
        };
        for level in [40u8, 128, 200] {
            let d = run(level, 1, 0);
            assert!(d.chunks(4).all(|px| px[3] == level), "padding untouched");
            let (_, sd) = std_of(d.chunks(4).flat_map(|px| px[..3].iter().map(|&v| v as f64)));
            let want = (2.0 * level as f64 + 16.0).sqrt();
            assert!(
                (sd - want).abs() < 0.04 * want,
                "level {level}: sd {sd:.2}, want {want:.2}"
            );
        }
        assert_eq!(run(100, 5, 2), run(100, 5, 2));
        assert_ne!(run(100, 5, 2), run(100, 5, 3));
    }

    #[test]
    fn synthesis_is_deterministic_and_varies_per_frame() {
        let (w, h) = (64, 48);
        let base: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 256) as u8).collect();
        let run = |seed, frame| {
            let mut d = base.clone();
            let p = NoiseParams::gaussian(20.0);
            add_noise_interleaved(&mut d, w, h, w * 4, 4, &[0, 1, 2], &p, seed, frame);
            d
        };
        assert_eq!(run(5, 3), run(5, 3));
        assert_ne!(run(5, 3), run(5, 4));
        assert_ne!(run(5, 3), run(6, 3));
        // Frame 1 of seed 0 and frame 0 of seed 1 must not coincide either.
        assert_ne!(run(0, 1), run(1, 0));
        let pg = |frame| {
            let mut d = base.clone();
            let p = NoiseParams::poisson_gaussian(3.0, 2.0);
            add_noise_interleaved(&mut d, w, h, w * 4, 4, &[0, 1, 2], &p, 11, frame);
            d
        };
        assert_eq!(pg(0), pg(0));
        assert_ne!(pg(0), pg(1));
    }

    #[test]
    fn untouched_bytes_stay_untouched() {
        // xRGB-like layout with row padding: stride 4 * 10 + 6.
        let (w, h, stride) = (10, 5, 46);
        let mut data: Vec<u8> = (0..stride * h).map(|i| (i % 251) as u8).collect();
        let orig = data.clone();
        let p = NoiseParams::gaussian(50.0);
        add_noise_interleaved(&mut data, w, h, stride, 4, &[1, 2, 3], &p, 0, 0);
        for (i, (&a, &b)) in data.iter().zip(&orig).enumerate() {
            let (y, x) = (i / stride, i % stride);
            if x >= w * 4 || x % 4 == 0 {
                assert_eq!(a, b, "byte {x} of row {y} changed");
            }
        }
        assert_ne!(data, orig);
        // sigma 0 is the identity.
        let mut same = orig.clone();
        add_noise_interleaved(
            &mut same,
            w,
            h,
            stride,
            4,
            &[1, 2, 3],
            &NoiseParams::gaussian(0.0),
            0,
            0,
        );
        assert_eq!(same, orig);
    }

    #[test]
    fn clamps_to_byte_range() {
        let mut data = vec![0u8; 1000];
        data[500..].fill(255);
        add_noise_interleaved(&mut data, 1000, 1, 1000, 1, &[0], &NoiseParams::gaussian(80.0), 2, 0);
        let zeros = data[..500].iter().filter(|&&v| v == 0).count();
        let full = data[500..].iter().filter(|&&v| v == 255).count();
        // About half of each side clips.
        assert!((200..300).contains(&zeros), "{zeros}");
        assert!((200..300).contains(&full), "{full}");
    }

    #[test]
    fn synthesis_speed_1080p() {
        // Reports the speed (meaningful in release builds); checks nothing else.
        let (w, h) = (1920, 1080);
        let mut data = vec![100u8; w * h * 4];
        for (name, p) in [
            ("gaussian", NoiseParams::gaussian(25.0)),
            ("poisson-gaussian", NoiseParams::poisson_gaussian(5.0, 1.0)),
        ] {
            let t = std::time::Instant::now();
            add_noise_interleaved(&mut data, w, h, w * 4, 4, &[0, 1, 2], &p, 0, 0);
            eprintln!("1080p RGBx {name}: {:?}", t.elapsed());
        }
    }

    #[test]
    #[should_panic]
    fn short_buffer_panics() {
        let mut data = vec![0u8; 10];
        add_noise_interleaved(&mut data, 4, 4, 4, 1, &[0], &NoiseParams::gaussian(1.0), 0, 0);
    }
}
