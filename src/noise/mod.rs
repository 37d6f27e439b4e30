//! Synthetic camera noise and noise-level estimation.
//!
//! * Synthesis ([`add_noise_interleaved`]): seeded, reproducible Gaussian or
//!   Poisson-Gaussian noise added in place to interleaved 8-bit samples, as the
//!   `addnoise` element and the evaluation tools use it. The same `(seed,
//!   frame_index)` always gives bit-identical output: the random generator
//!   (xoshiro256++ seeded through SplitMix64) and the normal sampler (a 65 536-entry
//!   table) are defined here, not borrowed from a crate whose stream may change
//!   between versions; only the platform's `exp` enters, so results carry across
//!   x86-64 and aarch64 Linux builds in practice.
//! * Estimation ([`SigmaEstimator`], [`estimate_sigma_planar`]): the noise standard
//!   deviation of a planar RGB float frame, robust to texture and edges, fed to
//!   models with a `sigma` input when the `noise-level` property is `-1`.
//!   [`SigmaSmoother`] steadies the per-frame estimate over time.
//!
//! Nothing on the per-frame paths allocates (the estimator's scratch buffers grow on
//! the first call and are reused after).
//!
//! The files: `synth` (the noise models and adding noise to a frame), `random` (the
//! random generator and normal sampler it draws from), `estimate` (the noise-level
//! estimator) and `smoother` (its smoothing over time).
mod estimate;
mod random;
mod smoother;
mod synth;

pub use estimate::{estimate_sigma_planar, SigmaEstimator};
pub use smoother::SigmaSmoother;
pub use synth::{add_noise_interleaved, NoiseKind, NoiseParams};

/// The mean and standard deviation of `values` (for the tests).
#[cfg(test)]
fn std_of(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut n, mut s, mut s2) = (0.0, 0.0, 0.0);
    for v in values {
        n += 1.0;
        s += v;
        s2 += v * v;
    }
    let mean = s / n;
    (mean, (s2 / n - mean * mean).sqrt())
}
