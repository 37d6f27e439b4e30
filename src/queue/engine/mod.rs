//! The inference engine: one thread that builds the backend (and, with
//! `concurrent-runs` N > 1, N - 1 replicas of it, each its own ONNX Runtime session),
//! gathers the frames waiting for inference in one or more streams' queues into
//! batches and hands them to N runner threads, one per backend ([`thread`]).
//!
//! A [`FrameQueue`](super::FrameQueue) made with `FrameQueue::new` gets a private
//! engine; one made with `FrameQueue::with_engine` joins an engine that several queues
//! (streams, cameras) may share: [`Engine::shared`] hands out the engine registered
//! in the process under an id, or starts it. Each queue keeps its own pre- and
//! post-processing workers, reordering, flush, leaky drops and statistics: the engine
//! only takes frames from each stream's inference channel (a [`Port`]), batches frames
//! of the same padded size from all streams (up to `batch_size`, waiting at most the
//! smallest `batch-timeout` of the streams), runs the backend once, and hands every
//! frame back to its own stream's post-processing (by its ticket: with several runs in
//! flight batches may finish out of order, and each stream's reorder restores it). Each stream runs its own batch stage
//! (the sigma fed to the model) on its own frames, restarted after its own flushes.
//!
//! The engine stops when the last stream leaves: its threads end, dropping the
//! backends, and are joined.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use crossbeam_channel::Sender;

use super::lock;
use crate::backend::BackendFactory;
use crate::{Error, Result};

#[cfg(test)]
mod concurrent_tests;
mod port;
#[cfg(test)]
mod tests;
mod thread;

pub(super) use port::{Port, QueuePort};

/// The most model runs in flight at once on one engine (`concurrent-runs`).
pub const MAX_CONCURRENT_RUNS: usize = 8;

/// The engine's counters, shared by every stream's [`Stats`](super::Stats).
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Model runs, and frames in them (from all streams).
    pub(super) runs: AtomicU64,
    pub(super) frames: AtomicU64,
    /// Time inside `Backend::run`, and time between runs (a runner idling for want
    /// of input) after each runner's first, summed over the runners.
    pub(super) inference_us: AtomicU64,
    pub(super) starved_us: AtomicU64,
    /// Streams (queues) on the engine now.
    pub(super) streams: AtomicUsize,
    /// What the backends are, once built.
    pub(super) backend: Mutex<BackendInfo>,
}

/// What an engine's backends are, once built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendInfo {
    /// `Backend::name` (for ONNX Runtime: the execution provider); empty until built.
    pub name: String,
    /// `Backend::engine_cache` of the first backend: "hit", "miss" or "off".
    pub engine_cache: &'static str,
    /// How long building the backends took, all of them.
    pub build: Duration,
    /// Backends, each running one batch at a time (`concurrent-runs`).
    pub runners: usize,
}

enum Ctl {
    Join(Box<dyn Port>),
    Leave(u64, Sender<()>),
}

/// An inference engine: one backend per run in flight, one or more streams.
pub struct Engine {
    /// Empty for a private engine.
    id: String,
    /// What streams sharing the engine must agree on, as (name, value).
    settings: Vec<(String, String)>,
    batch_size: usize,
    /// Model runs in flight at once, each on its own backend.
    runs: usize,
    counters: Arc<EngineCounters>,
    ctl: Mutex<Option<Sender<Ctl>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
}

/// The shared engines of the process, by id.
static REGISTRY: LazyLock<Mutex<HashMap<String, Weak<Engine>>>> = LazyLock::new(Default::default);

/// Stream ids, unique in the process.
static NEXT_STREAM: AtomicU64 = AtomicU64::new(0);

pub(super) fn next_stream_id() -> u64 {
    NEXT_STREAM.fetch_add(1, Ordering::Relaxed)
}

impl Engine {
    /// A private engine (one stream) running batches of up to `batch_size` frames with
    /// the backend `factory` builds on the engine's thread, `runs` of them at once
    /// (each on its own backend: the first and `runs - 1` replicas of it).
    pub fn private(batch_size: usize, runs: usize, factory: BackendFactory) -> Result<Arc<Engine>> {
        Self::start(String::new(), Vec::new(), batch_size, runs, factory)
    }

    /// The engine registered under `id` in this process, or, if none runs, a new one
    /// (registered) with the backend `factory()` builds. An engine already running under
    /// `id` must have the same `settings` (names and values, in order: model, provider,
    /// device...), `batch_size` and `runs`, or this fails with an error naming the id and the
    /// first setting that differs.
    pub fn shared(
        id: &str,
        settings: Vec<(String, String)>,
        batch_size: usize,
        runs: usize,
        factory: impl FnOnce() -> BackendFactory,
    ) -> Result<Arc<Engine>> {
        if id.is_empty() {
            return Err(Error::Invalid("a shared engine needs a non-empty id".into()));
        }
        let mut reg = lock(&REGISTRY);
        let existing = reg.get(id).and_then(Weak::upgrade);
        let result = match &existing {
            Some(engine) => engine.check(&settings, batch_size, runs).map(|()| engine.clone()),
            None => Self::start(id.to_string(), settings, batch_size, runs, factory()).inspect(|e| {
                reg.insert(id.to_string(), Arc::downgrade(e));
            }),
        };
        drop(reg);
        // Dropped after the registry's lock: the last reference going runs `Drop`,
        // which takes the lock.
        drop(existing);
        result
    }

    fn check(&self, settings: &[(String, String)], batch_size: usize, runs: usize) -> Result<()> {
        let differs = |name: &str, mine: &str, theirs: &str| {
            Error::Invalid(format!(
                "shared engine '{}': {name} '{mine}' differs from '{theirs}' of the engine already \
                 running under this id (instances sharing an engine need the same model, \
                 execution-provider, device-id, fp16, batch-size and concurrent-runs)",
                self.id
            ))
        };
        if batch_size != self.batch_size {
            return Err(differs(
                "batch-size",
                &batch_size.to_string(),
                &self.batch_size.to_string(),
            ));
        }
        if runs != self.runs {
            return Err(differs("concurrent-runs", &runs.to_string(), &self.runs.to_string()));
        }
        for (i, (name, value)) in settings.iter().enumerate() {
            let theirs = self.settings.get(i).filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
            if theirs != Some(value.as_str()) {
                return Err(differs(name, value, theirs.unwrap_or("(unset)")));
            }
        }
        if settings.len() != self.settings.len() {
            return Err(Error::Invalid(format!(
                "shared engine '{}': the settings compared differ in number",
                self.id
            )));
        }
        Ok(())
    }

    fn start(
        id: String,
        settings: Vec<(String, String)>,
        batch_size: usize,
        runs: usize,
        factory: BackendFactory,
    ) -> Result<Arc<Engine>> {
        if !(1..=64).contains(&batch_size) {
            return Err(Error::Invalid(format!("batch-size {batch_size} is outside 1..=64")));
        }
        if !(1..=MAX_CONCURRENT_RUNS).contains(&runs) {
            return Err(Error::Invalid(format!(
                "concurrent-runs {runs} is outside 1..={MAX_CONCURRENT_RUNS}"
            )));
        }
        let counters = Arc::new(EngineCounters::default());
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("dseg-infer".into())
            .spawn(move || thread::engine_thread(ctl_rx, batch_size, runs, c, factory))
            .map_err(|e| Error::Invalid(format!("cannot start the inference thread: {e}")))?;
        Ok(Arc::new(Engine {
            id,
            settings,
            batch_size,
            runs,
            counters,
            ctl: Mutex::new(Some(ctl_tx)),
            thread_id: thread.thread().id(),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// The id it is registered under (empty for a private engine).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Model runs in flight at once.
    pub fn concurrent_runs(&self) -> usize {
        self.runs
    }

    /// Streams on the engine now.
    pub fn streams(&self) -> usize {
        self.counters.streams.load(Ordering::Relaxed)
    }

    pub(super) fn counters(&self) -> Arc<EngineCounters> {
        self.counters.clone()
    }

    pub(super) fn attach(&self, port: Box<dyn Port>) {
        self.counters.streams.fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = &*lock(&self.ctl) {
            let _ = tx.send(Ctl::Join(port));
        }
    }

    /// Takes the stream off the engine; returns once the engine holds nothing of it
    /// (batches of it already in a backend, or a backend being built, finish first).
    pub(super) fn detach(&self, stream: u64) {
        self.counters.streams.fetch_sub(1, Ordering::Relaxed);
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        let sent = match &*lock(&self.ctl) {
            Some(tx) => tx.send(Ctl::Leave(stream, ack_tx)).is_ok(),
            None => false,
        };
        // The engine thread cannot wait for itself (a queue dropped there).
        if sent && std::thread::current().id() != self.thread_id {
            let _ = ack_rx.recv();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            let mut reg = lock(&REGISTRY);
            if reg.get(&self.id).is_some_and(|w| w.strong_count() == 0) {
                reg.remove(&self.id);
            }
        }
        // Closing the control channel ends the thread once its build returns; its
        // runners end after the batches they run.
        lock(&self.ctl).take();
        if let Some(t) = lock(&self.thread).take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
