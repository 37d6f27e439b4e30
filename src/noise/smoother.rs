//! [`SigmaSmoother`]: the per-frame noise estimate steadied over time.
/// Frames in the median window of [`SigmaSmoother`].
const SMOOTHER_WINDOW: usize = 5;
/// Per frame, the held peak keeps this share of itself: it halves in about 140
/// frames (5.5 s at 25 frames/s), longer than the keyframe interval of most cameras'
/// streams (1 to 4 s).
pub const PEAK_DECAY: f32 = 0.995;

/// Temporal smoothing of per-frame sigma estimates, the larger of two readings:
///
/// - steady: the median of the last five estimates (so a single odd frame is
///   rejected), then an exponential moving average with weight `alpha` on the new
///   median;
/// - held peak: the largest recent estimate, decaying by [`PEAK_DECAY`] a frame.
///
/// The peak is for compressed video. A codec shows a camera's noise on its intra-coded
/// frames (keyframes) and hides most of it on the predicted frames between them, which
/// copy and smooth what came before: on a street clip with camera noise of sigma 25
/// through x264 (CRF 23), the keyframe reads 22.7 and the next frames 0 to 16, while
/// the model denoises every one of them best when fed about 31
/// (models/RESULTS.md). The noise of a camera changes slowly, so the frames that show
/// the most of it are the ones to read it from. On white noise, where every frame reads
/// the same, the peak is the steady value within the estimate's own spread (1 to 2 %).
#[derive(Debug, Clone)]
pub struct SigmaSmoother {
    alpha: f32,
    window: [f32; SMOOTHER_WINDOW],
    len: usize,
    pos: usize,
    steady: Option<f32>,
    peak: f32,
    value: Option<f32>,
}

impl SigmaSmoother {
    /// `alpha` in (0, 1]: 1 follows the median at once, 0.1 settles in about ten
    /// frames. Values outside are clamped (NaN counts as 1).
    pub fn new(alpha: f32) -> Self {
        let alpha = if alpha.is_nan() { 1.0 } else { alpha.clamp(1e-3, 1.0) };
        SigmaSmoother {
            alpha,
            window: [0.0; SMOOTHER_WINDOW],
            len: 0,
            pos: 0,
            steady: None,
            peak: 0.0,
            value: None,
        }
    }

    /// Feeds one frame's estimate and returns the smoothed value. Non-finite or
    /// negative estimates are ignored (the current value is returned, 0 before any).
    pub fn update(&mut self, estimate: f32) -> f32 {
        if !estimate.is_finite() || estimate < 0.0 {
            return self.value.unwrap_or(0.0);
        }
        self.window[self.pos] = estimate;
        self.pos = (self.pos + 1) % SMOOTHER_WINDOW;
        self.len = (self.len + 1).min(SMOOTHER_WINDOW);
        let mut sorted = self.window;
        let recent = &mut sorted[..self.len];
        recent.sort_unstable_by(f32::total_cmp);
        // The lower median for an even count: with two values, an upward outlier
        // is rejected.
        let median = recent[(self.len - 1) / 2];
        let steady = match self.steady {
            None => median,
            Some(v) => v + self.alpha * (median - v),
        };
        self.steady = Some(steady);
        self.peak = estimate.max(self.peak * PEAK_DECAY);
        let next = steady.max(self.peak);
        self.value = Some(next);
        next
    }

    /// The current smoothed value, if any estimate was fed since the last reset.
    pub fn value(&self) -> Option<f32> {
        self.value
    }

    /// Forgets every estimate (on a new stream or a seek).
    pub fn reset(&mut self) {
        self.len = 0;
        self.pos = 0;
        self.steady = None;
        self.peak = 0.0;
        self.value = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoother_follows_a_lasting_change_and_ignores_garbage() {
        let mut s = SigmaSmoother::new(0.5);
        assert_eq!(s.value(), None);
        assert_eq!(s.update(10.0), 10.0);
        // Garbage is ignored.
        assert_eq!(s.update(f32::NAN), 10.0);
        assert_eq!(s.update(-1.0), 10.0);
        // A lasting rise is followed at once (the peak), a lasting fall as the peak decays.
        assert_eq!(s.update(20.0), 20.0);
        let mut v = 0.0;
        for _ in 0..2000 {
            v = s.update(5.0);
        }
        assert!((v - 5.0).abs() < 1e-3, "{v}");
        s.reset();
        assert_eq!(s.value(), None);
        assert_eq!(s.update(3.0), 3.0);
    }

    #[test]
    fn a_keyframe_that_shows_the_noise_holds_through_the_predicted_frames() {
        // A codec's keyframe reads the camera's noise, the predicted frames after it
        // read a fraction (as on the street clip of models/RESULTS.md); keyframes every
        // 50 frames.
        let mut s = SigmaSmoother::new(0.2);
        let mut low = f32::MAX;
        for i in 0..200 {
            let v = s.update(if i % 50 == 0 { 22.0 } else { 5.0 + (i % 3) as f32 });
            if i >= 50 {
                low = low.min(v);
            }
        }
        assert!(low > 22.0 * PEAK_DECAY.powi(49) - 1e-3 && low > 16.0, "fell to {low}");
    }

    #[test]
    fn steady_white_noise_reads_within_its_own_spread() {
        // Per-frame estimates of white noise of sigma 25 scatter by about 1 %.
        let mut s = SigmaSmoother::new(0.2);
        let mut v = 0.0;
        for i in 0..300 {
            v = s.update(25.0 + 0.25 * ((i * 7919) % 5) as f32 - 0.5);
        }
        assert!((25.0..=25.6).contains(&v), "{v}");
    }
}
