//! The queue's settings: [`QueueConfig`], fixed for the queue's life, and
//! [`Tunables`], which may change while it runs.
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::{Error, Result};

/// Queue settings fixed for the queue's life.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Frames per inference call, 1..=64.
    pub batch_size: usize,
    /// Frames allowed between `submit` and `recv`, at least `batch_size`.
    pub max_in_flight: usize,
    /// Pre-processing and post-processing threads (each), 1..=64.
    pub workers: usize,
    /// Padding multiple of the model.
    pub size_multiple: usize,
    /// Model runs in flight at once on a private engine, each on its own backend,
    /// 1..=[`MAX_CONCURRENT_RUNS`](super::engine::MAX_CONCURRENT_RUNS) (a shared
    /// engine has its own, fixed by its first stream).
    pub concurrent_runs: usize,
}

impl QueueConfig {
    pub fn validate(&self) -> Result<()> {
        if !(1..=64).contains(&self.batch_size) {
            return Err(Error::Invalid(format!(
                "batch-size {} is outside 1..=64",
                self.batch_size
            )));
        }
        if self.max_in_flight < self.batch_size || self.max_in_flight > 1024 {
            return Err(Error::Invalid(format!(
                "max-in-flight {} must be within batch-size ({})..=1024",
                self.max_in_flight, self.batch_size
            )));
        }
        if !(1..=64).contains(&self.workers) {
            return Err(Error::Invalid(format!("workers {} is outside 1..=64", self.workers)));
        }
        let max = super::engine::MAX_CONCURRENT_RUNS;
        if !(1..=max).contains(&self.concurrent_runs) {
            return Err(Error::Invalid(format!(
                "concurrent-runs {} is outside 1..={max}",
                self.concurrent_runs
            )));
        }
        if self.size_multiple == 0 {
            return Err(Error::Invalid("size multiple 0".into()));
        }
        Ok(())
    }
}

/// Settings that may change while the queue runs.
#[derive(Debug)]
pub struct Tunables {
    leaky: AtomicBool,
    /// f32 bits: noise sigma on the [0,1] scale, negative = estimate per frame (read
    /// by the [`Stages`]).
    noise_level: AtomicU32,
    batch_timeout_us: AtomicU64,
}

impl Tunables {
    pub fn new(leaky: bool, noise_level: f32, batch_timeout: Duration) -> Self {
        Tunables {
            leaky: AtomicBool::new(leaky),
            noise_level: AtomicU32::new(noise_level.to_bits()),
            batch_timeout_us: AtomicU64::new(batch_timeout.as_micros() as u64),
        }
    }
    pub fn set_leaky(&self, v: bool) {
        self.leaky.store(v, Ordering::Relaxed)
    }
    pub fn leaky(&self) -> bool {
        self.leaky.load(Ordering::Relaxed)
    }
    /// Noise sigma on the [0,1] scale; negative means estimate per frame.
    pub fn set_noise_level(&self, v: f32) {
        self.noise_level.store(v.to_bits(), Ordering::Relaxed)
    }
    pub fn noise_level(&self) -> f32 {
        f32::from_bits(self.noise_level.load(Ordering::Relaxed))
    }
    pub fn set_batch_timeout(&self, v: Duration) {
        self.batch_timeout_us.store(v.as_micros() as u64, Ordering::Relaxed)
    }
    pub fn batch_timeout(&self) -> Duration {
        Duration::from_micros(self.batch_timeout_us.load(Ordering::Relaxed))
    }
}
