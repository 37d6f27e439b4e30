//! [`SigmaSmoother`]: the per-frame noise estimate steadied over time.
/// Frames in the median window of [`SigmaSmoother`].
const SMOOTHER_WINDOW: usize = 5;

/// Temporal smoothing of per-frame sigma estimates: the median of the last five
/// estimates (so a single odd frame, a scene cut or a flash, is rejected), then an
/// exponential moving average with weight `alpha` on the new median.
#[derive(Debug, Clone)]
pub struct SigmaSmoother {
    alpha: f32,
    window: [f32; SMOOTHER_WINDOW],
    len: usize,
    pos: usize,
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
        let next = match self.value {
            None => median,
            Some(v) => v + self.alpha * (median - v),
        };
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
        self.value = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoother_rejects_outliers_and_settles() {
        let mut s = SigmaSmoother::new(0.5);
        assert_eq!(s.value(), None);
        assert_eq!(s.update(10.0), 10.0);
        // A single outlier is rejected by the median window.
        assert_eq!(s.update(100.0), 10.0);
        assert_eq!(s.update(10.0), 10.0);
        assert_eq!(s.update(10.0), 10.0);
        // Garbage is ignored.
        assert_eq!(s.update(f32::NAN), 10.0);
        assert_eq!(s.update(-1.0), 10.0);
        // A lasting change is followed.
        let mut v = 0.0;
        for _ in 0..20 {
            v = s.update(20.0);
        }
        assert!((v - 20.0).abs() < 1e-3, "{v}");
        s.reset();
        assert_eq!(s.value(), None);
        assert_eq!(s.update(3.0), 3.0);
    }
}
