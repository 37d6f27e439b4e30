//! The queue's counters ([`Stats`], updated by the queue's threads and by `recv`) and
//! a copy of them ([`StatsSnapshot`]).
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use super::EngineCounters;
use std::time::Duration;

/// Counters readable at any time.
#[derive(Debug, Default)]
pub struct Stats {
    pub(super) processed: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) latency_sum_us: AtomicU64,
    pub(super) latency_max_us: AtomicU64,
    /// Model runs with frames of this queue.
    pub(super) batches: AtomicU64,
    /// Frames of this queue the model ran (counted as each batch comes back, before
    /// post-processing).
    pub(super) inferred: AtomicU64,
    /// f32 bits of the last sigma fed to the model ([0,1] scale).
    pub(super) last_sigma: AtomicU32,
    /// The engine's counters (shared with the other queues on a shared engine).
    pub(super) engine: Arc<EngineCounters>,
}

/// A copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    pub processed: u64,
    pub dropped: u64,
    /// Model runs with frames of this queue.
    pub batches: u64,
    /// Frames of this queue the model ran: a frame counts when its batch comes back,
    /// before post-processing and the reordering, so the count can run ahead of
    /// `processed`.
    pub inferred: u64,
    pub mean_latency: Duration,
    pub max_latency: Duration,
    /// Mean time of one `Backend::run` (one batch) of the engine.
    pub mean_batch: Duration,
    /// Share of the engine thread's time since its first batch spent running the
    /// model (1.0: the device never waited for input).
    pub busy: f64,
    /// Frames per model run of the engine, from all its streams.
    pub mean_batch_frames: f64,
    /// Streams (queues) on the engine: 1 for a private engine.
    pub engine_streams: u64,
    /// Last noise sigma fed to the model, 8-bit units.
    pub sigma: f32,
    /// How long the engine's backends took to build (zero until built).
    pub build_time: Duration,
    /// What the build found in the TensorRT engine cache: "hit", "miss" or "off"
    /// (empty until built).
    pub engine_cache: &'static str,
    /// Model runs the engine has in flight at once (`concurrent-runs`; 0 until built).
    pub concurrent_runs: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let processed = self.processed.load(Ordering::Relaxed);
        let sum = self.latency_sum_us.load(Ordering::Relaxed);
        let batches = self.batches.load(Ordering::Relaxed);
        let runs = self.engine.runs.load(Ordering::Relaxed);
        let frames = self.engine.frames.load(Ordering::Relaxed);
        let inference = self.engine.inference_us.load(Ordering::Relaxed);
        let starved = self.engine.starved_us.load(Ordering::Relaxed);
        let info = super::lock(&self.engine.backend).clone();
        StatsSnapshot {
            build_time: info.build,
            engine_cache: info.engine_cache,
            concurrent_runs: info.runners as u64,
            processed,
            dropped: self.dropped.load(Ordering::Relaxed),
            batches,
            inferred: self.inferred.load(Ordering::Relaxed),
            mean_batch: Duration::from_micros(inference.checked_div(runs).unwrap_or(0)),
            mean_batch_frames: if runs > 0 { frames as f64 / runs as f64 } else { 0.0 },
            engine_streams: self.engine.streams.load(Ordering::Relaxed) as u64,
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
    /// What the engine's backend runs on (`Backend::name`; empty until it is built).
    pub fn backend(&self) -> String {
        super::lock(&self.engine.backend).name.clone()
    }

    /// Counts a frame dropped outside the queue (for instance a late frame under QoS).
    pub fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}
