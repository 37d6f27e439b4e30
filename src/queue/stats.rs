//! The queue's counters ([`Stats`], updated by the queue's threads and by `recv`) and
//! a copy of them ([`StatsSnapshot`]).
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Counters readable at any time.
#[derive(Debug, Default)]
pub struct Stats {
    pub(super) processed: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) latency_sum_us: AtomicU64,
    pub(super) latency_max_us: AtomicU64,
    pub(super) batches: AtomicU64,
    /// Time inside `Backend::run`, and time the inference thread waited for a frame
    /// after its first batch (the device idling for want of input).
    pub(super) inference_us: AtomicU64,
    pub(super) starved_us: AtomicU64,
    /// f32 bits of the last sigma fed to the model ([0,1] scale).
    pub(super) last_sigma: AtomicU32,
}

/// A copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    pub processed: u64,
    pub dropped: u64,
    pub batches: u64,
    pub mean_latency: Duration,
    pub max_latency: Duration,
    /// Mean time of one `Backend::run` (one batch).
    pub mean_batch: Duration,
    /// Share of the inference thread's time since its first batch spent running the
    /// model (1.0: the device never waited for input).
    pub busy: f64,
    /// Last noise sigma fed to the model, 8-bit units.
    pub sigma: f32,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let processed = self.processed.load(Ordering::Relaxed);
        let sum = self.latency_sum_us.load(Ordering::Relaxed);
        let batches = self.batches.load(Ordering::Relaxed);
        let inference = self.inference_us.load(Ordering::Relaxed);
        let starved = self.starved_us.load(Ordering::Relaxed);
        StatsSnapshot {
            processed,
            dropped: self.dropped.load(Ordering::Relaxed),
            batches,
            mean_batch: Duration::from_micros(inference.checked_div(batches).unwrap_or(0)),
            busy: if inference + starved > 0 {
                inference as f64 / (inference + starved) as f64
            } else {
                0.0
            },
            mean_latency: Duration::from_micros(sum.checked_div(processed).unwrap_or(0)),
            max_latency: Duration::from_micros(self.latency_max_us.load(Ordering::Relaxed)),
            sigma: f32::from_bits(self.last_sigma.load(Ordering::Relaxed)) * 255.0,
        }
    }
    /// Counts a frame dropped outside the queue (for instance a late frame under QoS).
    pub fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}
