//! The multi-threaded frame queue that keeps the inference device busy.
//!
//! ```text
//! submit() --> pre workers --> inference thread --> post workers --> recv() in order
//! (caller)     (Processor::pre,   (batches of up to     (PostStage,            (reorders by
//!              PreStage)          batch_size frames,    Processor::post)       sequence number)
//!                                 BatchStage,
//!                                 Backend::run)
//! ```
//!
//! The queue knows nothing of the model: the element's [`Processor`] turns frames into
//! tensors and results into output, the [`Stages`] (the engine's model-specific steps,
//! `crate::processing::ModelStages`) run at fixed points around it, and the backend
//! runs the model.
//!
//! - Every frame and every serialized event gets a sequence number at submission;
//!   [`FrameQueue::recv`] hands them out strictly in that order, so events never
//!   overtake the frames queued before them.
//! - Memory is bounded: at most `max_in_flight` frames exist between `submit` and
//!   `recv` (a permit travels with each frame and is released wherever it is dropped).
//!   Per-frame tensors come from a pool and are reused, so the steady state allocates
//!   nothing per frame.
//! - When full, `submit` blocks, or, with `leaky` set, drops the oldest frame still
//!   waiting for inference (or, if none waits, the new frame) and counts it.
//! - [`FrameQueue::flush_start`] wakes every blocked call at once and makes every
//!   frame already in the stages stale: none of them comes out after the flush.
//! - Worker panics and backend errors come out of `recv` as errors at the failing
//!   frame's position; the queue never hangs on them.
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::backend::BackendFactory;
use crate::tensors::{Pool, Pooled, Tensors};
use crate::{Error, Result};

/// The element-specific stages: turning a frame into tensors and results into output.
pub trait Processor: Send + Sync + 'static {
    /// What `submit` takes (for a GStreamer element: the mapped input buffer and its metadata).
    type Frame: Send + 'static;
    /// What `recv` gives back for each frame.
    type Output: Send + 'static;
    /// Pre-processing worker: fill `t.image` (planar, padded) from the frame. The frame
    /// may release what it no longer needs (an upstream buffer) here.
    fn pre(&self, frame: &mut Self::Frame, t: &mut Tensors) -> Result<()>;
    /// Post-processing worker: make the output from the results in `t`.
    fn post(&self, frame: Self::Frame, t: &mut Tensors) -> Result<Self::Output>;
}

/// Steps the queue runs on every frame around the [`Processor`] without knowing what
/// they do: the engine's model-specific ones are `crate::processing::ModelStages`;
/// [`NoStages`] does nothing. Each pre-processing worker and the inference thread make
/// their own state once, when they start, so that the steps share nothing and allocate
/// nothing per frame.
pub trait Stages: Send + Sync + 'static {
    /// The state of one pre-processing worker.
    fn pre_stage(&self) -> Box<dyn PreStage>;
    /// The state of the inference thread.
    fn batch_stage(&self) -> Box<dyn BatchStage>;
    /// On a post-processing worker, before `Processor::post`.
    fn post_stage(&self, t: &mut Tensors);
}

/// A pre-processing worker's step, right after `Processor::pre`.
pub trait PreStage: Send {
    fn run(&mut self, t: &mut Tensors, tunables: &Tunables);
}

/// The inference thread's step on each batch, right before `Backend::run`.
pub trait BatchStage: Send {
    /// After a flush: nothing from before it carries over.
    fn reset(&mut self);
    fn run(&mut self, batch: &mut [Pooled], tunables: &Tunables);
}

/// No steps around the processor.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStages;

impl Stages for NoStages {
    fn pre_stage(&self) -> Box<dyn PreStage> {
        Box::new(NoStages)
    }
    fn batch_stage(&self) -> Box<dyn BatchStage> {
        Box::new(NoStages)
    }
    fn post_stage(&self, _t: &mut Tensors) {}
}

impl PreStage for NoStages {
    fn run(&mut self, _t: &mut Tensors, _tunables: &Tunables) {}
}

impl BatchStage for NoStages {
    fn reset(&mut self) {}
    fn run(&mut self, _batch: &mut [Pooled], _tunables: &Tunables) {}
}

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

/// Counters readable at any time.
#[derive(Debug, Default)]
pub struct Stats {
    processed: AtomicU64,
    dropped: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
    batches: AtomicU64,
    /// Time inside `Backend::run`, and time the inference thread waited for a frame
    /// after its first batch (the device idling for want of input).
    inference_us: AtomicU64,
    starved_us: AtomicU64,
    /// f32 bits of the last sigma fed to the model ([0,1] scale).
    last_sigma: AtomicU32,
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

/// What `submit` did with the frame. A dropped frame is handed back, so that the
/// caller can report it (its timestamps in a QoS message, say).
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted<F> {
    Queued,
    /// Queued after dropping the oldest waiting frame (leaky), given back here.
    QueuedDroppedOldest(F),
    /// The queue was full and nothing waited: the new frame was dropped (leaky) and
    /// is given back.
    DroppedNew(F),
}

/// What `recv` gives.
#[derive(Debug)]
pub enum Output<O, E> {
    Frame {
        out: O,
        /// Time from `submit` to `recv`.
        latency: Duration,
        /// Frames were dropped right before this one (mark it DISCONT).
        after_drop: bool,
    },
    Event(E),
    Error(Error),
}

/// `recv`'s answer.
#[derive(Debug)]
pub enum Recv<O, E> {
    Item(Output<O, E>),
    /// The queue is flushing: nothing comes out until `flush_stop`.
    Flushing,
    /// The queue was shut down.
    Closed,
}

/// Why `submit` refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Flushing,
    Closed,
}

struct Capacity {
    state: Mutex<CapState>,
    cv: Condvar,
}

struct CapState {
    in_flight: usize,
    max: usize,
}

/// One frame's share of the queue's capacity; released on drop, wherever that is.
struct Permit(Arc<Capacity>);

impl Drop for Permit {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        st.in_flight -= 1;
        drop(st);
        self.0.cv.notify_all();
    }
}

struct Work<F> {
    seq: u64,
    epoch: u64,
    frame: F,
    permit: Permit,
    t0: Instant,
}

struct Staged<F> {
    seq: u64,
    epoch: u64,
    frame: F,
    permit: Permit,
    t0: Instant,
    tensors: Pooled,
}

enum DoneKind<O, E> {
    Frame {
        out: O,
        _permit: Permit,
        t0: Instant,
    },
    Event(E),
    Dropped,
    /// A frame that failed after its error was already reported (the backend could
    /// not be built): its position is skipped silently.
    Failed,
    Error(Error),
}

enum Done<O, E> {
    Seq {
        seq: u64,
        kind: DoneKind<O, E>,
    },
    /// Not tied to a position: the backend could not be built.
    Fatal(Error),
    /// Wakes a blocked `recv` (flush, shutdown).
    Wake,
}

struct Reorder<O, E> {
    base: u64,
    slots: VecDeque<Option<DoneKind<O, E>>>,
    after_drop: bool,
    fatal: Option<Error>,
}

struct Shared<P: Processor, E> {
    config: QueueConfig,
    tunables: Arc<Tunables>,
    stats: Arc<Stats>,
    processor: Arc<P>,
    stages: Arc<dyn Stages>,
    capacity: Arc<Capacity>,
    flushing: AtomicBool,
    closed: AtomicBool,
    epoch: AtomicU64,
    next_seq: AtomicU64,
    pool: Pool,
    done_tx: Sender<Done<P::Output, E>>,
}

impl<P: Processor, E> Shared<P, E> {
    fn stale(&self, epoch: u64) -> bool {
        epoch != self.epoch.load(Ordering::Acquire) || self.closed.load(Ordering::Acquire)
    }

    fn tensors(&self) -> Pooled {
        self.pool.get()
    }

    fn done(&self, seq: u64, kind: DoneKind<P::Output, E>) {
        let _ = self.done_tx.send(Done::Seq { seq, kind });
    }
}

/// The frame queue. `P` does the element-specific pre- and post-processing; `E` is the
/// type of serialized events carried in order between frames.
pub struct FrameQueue<P: Processor, E: Send + 'static> {
    shared: Arc<Shared<P, E>>,
    pre_tx: Mutex<Option<Sender<Work<P::Frame>>>>,
    // Receivers kept for `leaky`: popping the oldest waiting frame.
    pre_rx: Receiver<Work<P::Frame>>,
    infer_rx: Receiver<Staged<P::Frame>>,
    done_rx: Receiver<Done<P::Output, E>>,
    reorder: Mutex<Reorder<P::Output, E>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    inference: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl<P: Processor, E: Send + 'static> FrameQueue<P, E> {
    /// Starts the worker threads. `stages` run around `processor`; `factory` builds the
    /// backend on the inference thread.
    pub fn new(
        config: QueueConfig,
        tunables: Arc<Tunables>,
        processor: Arc<P>,
        stages: Arc<dyn Stages>,
        factory: BackendFactory,
    ) -> Result<Self> {
        config.validate()?;
        let pool = Pool::new(config.max_in_flight + 1);
        let (pre_tx, pre_rx) = crossbeam_channel::unbounded::<Work<P::Frame>>();
        let (infer_tx, infer_rx) = crossbeam_channel::unbounded::<Staged<P::Frame>>();
        let (post_tx, post_rx) = crossbeam_channel::unbounded::<Staged<P::Frame>>();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            capacity: Arc::new(Capacity {
                state: Mutex::new(CapState {
                    in_flight: 0,
                    max: config.max_in_flight,
                }),
                cv: Condvar::new(),
            }),
            config,
            tunables,
            stats: Arc::new(Stats::default()),
            processor,
            stages,
            flushing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            pool,
            done_tx,
        });
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| Error::Invalid(format!("cannot start a queue thread: {e}")))
        };
        let mut threads = Vec::new();
        for i in 0..shared.config.workers {
            let (sh, rx, tx) = (shared.clone(), pre_rx.clone(), infer_tx.clone());
            threads.push(spawn(
                format!("dseg-pre-{i}"),
                Box::new(move || pre_worker(sh, rx, tx)),
            )?);
            let (sh, rx) = (shared.clone(), post_rx.clone());
            threads.push(spawn(format!("dseg-post-{i}"), Box::new(move || post_worker(sh, rx)))?);
        }
        let (sh, rx) = (shared.clone(), infer_rx.clone());
        let inference = spawn(
            "dseg-infer".into(),
            Box::new(move || inference_thread(sh, rx, post_tx, factory)),
        )?;
        Ok(FrameQueue {
            shared,
            pre_tx: Mutex::new(Some(pre_tx)),
            pre_rx,
            infer_rx,
            done_rx,
            reorder: Mutex::new(Reorder {
                base: 0,
                slots: VecDeque::new(),
                after_drop: false,
                fatal: None,
            }),
            threads: Mutex::new(threads),
            inference: Mutex::new(Some(inference)),
        })
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.shared.stats.clone()
    }

    pub fn tunables(&self) -> &Arc<Tunables> {
        &self.shared.tunables
    }

    pub fn config(&self) -> &QueueConfig {
        &self.shared.config
    }

    /// Frames between `submit` and `recv` now.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.capacity.state).in_flight
    }

    /// Queues a frame. Blocks while the queue is full unless leaky; returns at once
    /// with `Refused::Flushing` when a flush starts.
    pub fn submit(&self, frame: P::Frame) -> Result<Submitted<P::Frame>, Refused> {
        let sh = &self.shared;
        let mut outcome = Submitted::Queued;
        let mut st = lock(&sh.capacity.state);
        loop {
            if sh.closed.load(Ordering::Acquire) {
                return Err(Refused::Closed);
            }
            if sh.flushing.load(Ordering::Acquire) {
                return Err(Refused::Flushing);
            }
            if st.in_flight < st.max {
                st.in_flight += 1;
                break;
            }
            if sh.tunables.leaky() {
                drop(st);
                if let Some(oldest) = self.drop_oldest() {
                    outcome = Submitted::QueuedDroppedOldest(oldest);
                    st = lock(&sh.capacity.state);
                    continue;
                }
                sh.stats.dropped.fetch_add(1, Ordering::Relaxed);
                // It takes a position, so that the frame after the gap is the one marked.
                sh.done(sh.next_seq.fetch_add(1, Ordering::AcqRel), DoneKind::Dropped);
                return Ok(Submitted::DroppedNew(frame));
            }
            st = sh.capacity.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        drop(st);
        let work = Work {
            seq: sh.next_seq.fetch_add(1, Ordering::AcqRel),
            epoch: sh.epoch.load(Ordering::Acquire),
            frame,
            permit: Permit(sh.capacity.clone()),
            t0: Instant::now(),
        };
        match &*lock(&self.pre_tx) {
            Some(tx) if tx.send(work).is_ok() => Ok(outcome),
            _ => Err(Refused::Closed),
        }
    }

    /// Drops the oldest frame still waiting for inference (or for pre-processing),
    /// releasing its share of the capacity, and gives the frame back.
    fn drop_oldest(&self) -> Option<P::Frame> {
        let (seq, frame) = match self.infer_rx.try_recv() {
            Ok(s) => (s.seq, s.frame),
            Err(_) => self.pre_rx.try_recv().ok().map(|w| (w.seq, w.frame))?,
        };
        self.shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
        self.shared.done(seq, DoneKind::Dropped);
        Some(frame)
    }

    /// Queues a serialized event: it comes out of `recv` after every frame submitted before it.
    pub fn submit_event(&self, event: E) -> Result<(), Refused> {
        let sh = &self.shared;
        if sh.closed.load(Ordering::Acquire) {
            return Err(Refused::Closed);
        }
        if sh.flushing.load(Ordering::Acquire) {
            return Err(Refused::Flushing);
        }
        let seq = sh.next_seq.fetch_add(1, Ordering::AcqRel);
        sh.done(seq, DoneKind::Event(event));
        Ok(())
    }

    /// The next frame or event in submission order; blocks until it is ready.
    pub fn recv(&self) -> Recv<P::Output, E> {
        loop {
            {
                let mut r = lock(&self.reorder);
                if self.shared.closed.load(Ordering::Acquire) {
                    return Recv::Closed;
                }
                if self.shared.flushing.load(Ordering::Acquire) {
                    return Recv::Flushing;
                }
                if let Some(e) = r.fatal.take() {
                    return Recv::Item(Output::Error(e));
                }
                while let Some(Some(_)) = r.slots.front() {
                    let kind = r.slots.pop_front().flatten().expect("front checked");
                    r.base += 1;
                    match kind {
                        DoneKind::Dropped => {
                            r.after_drop = true;
                        }
                        DoneKind::Failed => {}
                        DoneKind::Frame { out, _permit, t0 } => {
                            drop(_permit);
                            let latency = t0.elapsed();
                            let stats = &self.shared.stats;
                            let us = latency.as_micros() as u64;
                            stats.processed.fetch_add(1, Ordering::Relaxed);
                            stats.latency_sum_us.fetch_add(us, Ordering::Relaxed);
                            stats.latency_max_us.fetch_max(us, Ordering::Relaxed);
                            let after_drop = std::mem::take(&mut r.after_drop);
                            return Recv::Item(Output::Frame {
                                out,
                                latency,
                                after_drop,
                            });
                        }
                        DoneKind::Event(e) => return Recv::Item(Output::Event(e)),
                        DoneKind::Error(e) => return Recv::Item(Output::Error(e)),
                    }
                }
            }
            let msg = match self.done_rx.recv() {
                Ok(m) => m,
                Err(_) => return Recv::Closed,
            };
            let mut r = lock(&self.reorder);
            match msg {
                Done::Wake => {}
                Done::Fatal(e) => r.fatal = Some(e),
                Done::Seq { seq, kind } => {
                    if seq < r.base {
                        continue; // from before a flush
                    }
                    let idx = (seq - r.base) as usize;
                    if r.slots.len() <= idx {
                        r.slots.resize_with(idx + 1, || None);
                    }
                    r.slots[idx] = Some(kind);
                }
            }
        }
    }

    /// Starts a flush: wakes every blocked `submit` and `recv` at once, and makes every
    /// frame and event in the queue stale.
    pub fn flush_start(&self) {
        let sh = &self.shared;
        {
            let _st = lock(&sh.capacity.state);
            sh.flushing.store(true, Ordering::Release);
            sh.epoch.fetch_add(1, Ordering::AcqRel);
        }
        sh.capacity.cv.notify_all();
        let _ = sh.done_tx.send(Done::Wake);
        // Frames not yet taken by a worker can go right away.
        while self.pre_rx.try_recv().is_ok() {}
        while self.infer_rx.try_recv().is_ok() {}
    }

    /// Ends a flush. The caller makes sure no `submit` runs concurrently (the sink
    /// pad's stream lock). Nothing submitted before the flush comes out after it.
    pub fn flush_stop(&self) {
        let sh = &self.shared;
        let mut r = lock(&self.reorder);
        r.base = sh.next_seq.load(Ordering::Acquire);
        r.slots.clear();
        r.after_drop = false;
        sh.flushing.store(false, Ordering::Release);
    }

    /// Whether a flush is in progress.
    pub fn is_flushing(&self) -> bool {
        self.shared.flushing.load(Ordering::Acquire)
    }

    /// Stops the threads and waits for every one of them: frames in flight are
    /// discarded, a batch already in the backend finishes, and a backend still being
    /// built is waited for and dropped. Nothing of the queue outlives this call, so a
    /// process may exit, or a new queue build its own backend, right after it. How long
    /// it blocks is bounded by one backend build (an ONNX Runtime session: well under a
    /// second on a CPU; a TensorRT engine without a cache: minutes) or one batch.
    pub fn shutdown(&self) {
        let sh = &self.shared;
        {
            let _st = lock(&sh.capacity.state);
            sh.closed.store(true, Ordering::Release);
            sh.epoch.fetch_add(1, Ordering::AcqRel);
        }
        sh.capacity.cv.notify_all();
        let _ = sh.done_tx.send(Done::Wake);
        // Closing the pre-processing channel ends the pre workers; their ends of the
        // inference channel go with them, which ends the inference thread once its
        // build or batch returns; the post workers watch `closed`.
        lock(&self.pre_tx).take();
        while self.pre_rx.try_recv().is_ok() {}
        while self.infer_rx.try_recv().is_ok() {}
        let mut threads = std::mem::take(&mut *lock(&self.threads));
        threads.extend(lock(&self.inference).take());
        let me = std::thread::current().id();
        for t in threads {
            // A queue dropped on one of its own threads (the last reference to its
            // owner released there) cannot wait for itself; that thread is ending anyway.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        let mut r = lock(&self.reorder);
        r.slots.clear();
    }
}

impl<P: Processor, E: Send + 'static> Drop for FrameQueue<P, E> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn pre_worker<P: Processor, E>(sh: Arc<Shared<P, E>>, rx: Receiver<Work<P::Frame>>, tx: Sender<Staged<P::Frame>>) {
    let mut stage = sh.stages.pre_stage();
    while let Ok(mut w) = rx.recv() {
        if sh.stale(w.epoch) {
            continue;
        }
        let mut t = sh.tensors();
        let seq = w.seq;
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
            sh.processor.pre(&mut w.frame, &mut t)?;
            stage.run(&mut t, &sh.tunables);
            Ok(())
        }));
        match result {
            Ok(Ok(())) => {
                let staged = Staged {
                    seq: w.seq,
                    epoch: w.epoch,
                    frame: w.frame,
                    permit: w.permit,
                    t0: w.t0,
                    tensors: t,
                };
                if tx.send(staged).is_err() {
                    return;
                }
            }
            Ok(Err(e)) => sh.done(seq, DoneKind::Error(e)),
            Err(p) => sh.done(seq, DoneKind::Error(Error::Panic(panic_message(p)))),
        }
    }
}

fn inference_thread<P: Processor, E>(
    sh: Arc<Shared<P, E>>,
    rx: Receiver<Staged<P::Frame>>,
    tx: Sender<Staged<P::Frame>>,
    factory: BackendFactory,
) {
    let built = catch_unwind(AssertUnwindSafe(factory)).unwrap_or_else(|p| Err(Error::Panic(panic_message(p))));
    let mut backend = match built {
        Ok(b) => b,
        Err(e) => {
            let _ = sh.done_tx.send(Done::Fatal(e));
            // Keep draining: each frame's permit is released and its position freed
            // (the error was reported once), so events queued behind frames, EOS or
            // a drain, still come out and nothing blocks.
            while let Ok(s) = rx.recv() {
                sh.done(s.seq, DoneKind::Failed);
            }
            return;
        }
    };
    let mut stage = sh.stages.batch_stage();
    let mut stage_epoch = sh.epoch.load(Ordering::Acquire);
    let mut tensors: Vec<Pooled> = Vec::with_capacity(sh.config.batch_size);
    let mut metas: Vec<(u64, u64, P::Frame, Permit, Instant)> = Vec::with_capacity(sh.config.batch_size);
    let mut pending: Option<Staged<P::Frame>> = None;
    // End of the last model run: the gap to the next one is time the device idled.
    let mut last_run_end: Option<Instant> = None;
    loop {
        let first = match pending.take() {
            Some(s) => s,
            None => match rx.recv() {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        if sh.stale(first.epoch) {
            continue;
        }
        let shape = (first.tensors.pw, first.tensors.ph);
        let deadline = Instant::now() + sh.tunables.batch_timeout();
        let push = |s: Staged<P::Frame>, tensors: &mut Vec<Pooled>, metas: &mut Vec<_>| {
            tensors.push(s.tensors);
            metas.push((s.seq, s.epoch, s.frame, s.permit, s.t0));
        };
        push(first, &mut tensors, &mut metas);
        while tensors.len() < sh.config.batch_size {
            let next = match rx.recv_deadline(deadline) {
                Ok(s) => s,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if sh.stale(next.epoch) {
                continue;
            }
            if (next.tensors.pw, next.tensors.ph) != shape {
                pending = Some(next);
                break;
            }
            push(next, &mut tensors, &mut metas);
        }
        if sh.closed.load(Ordering::Acquire) {
            return; // shut down while the batch filled: its frames are discarded anyway
        }

        // The batch stage (the sigma fed to the model) restarts after a flush.
        let epoch = sh.epoch.load(Ordering::Acquire);
        if epoch != stage_epoch {
            stage.reset();
            stage_epoch = epoch;
        }
        stage.run(&mut tensors, &sh.tunables);
        if let Some(t) = tensors.last() {
            sh.stats.last_sigma.store(t.sigma.to_bits(), Ordering::Relaxed);
        }

        let started = Instant::now();
        if let Some(end) = last_run_end {
            let gap = started.duration_since(end).as_micros() as u64;
            sh.stats.starved_us.fetch_add(gap, Ordering::Relaxed);
        }
        let result = catch_unwind(AssertUnwindSafe(|| backend.run(&mut tensors)))
            .unwrap_or_else(|p| Err(Error::Panic(panic_message(p))));
        let end = Instant::now();
        last_run_end = Some(end);
        sh.stats
            .inference_us
            .fetch_add(end.duration_since(started).as_micros() as u64, Ordering::Relaxed);
        sh.stats.batches.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                for (t, (seq, epoch, frame, permit, t0)) in tensors.drain(..).zip(metas.drain(..)) {
                    let staged = Staged {
                        seq,
                        epoch,
                        frame,
                        permit,
                        t0,
                        tensors: t,
                    };
                    if tx.send(staged).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tensors.clear();
                for (seq, ..) in metas.drain(..) {
                    sh.done(seq, DoneKind::Error(e.duplicate()));
                }
            }
        }
    }
}

/// Receives from `rx` until the queue closes (checked every 50 ms, so that a post
/// worker whose producer, the inference thread, is still building its backend ends
/// as soon as the queue closes).
fn recv_until_closed<T, P: Processor, E>(sh: &Shared<P, E>, rx: &Receiver<T>) -> Option<T> {
    loop {
        if sh.closed.load(Ordering::Acquire) {
            return None;
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(v) => return Some(v),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn post_worker<P: Processor, E>(sh: Arc<Shared<P, E>>, rx: Receiver<Staged<P::Frame>>) {
    while let Some(mut s) = recv_until_closed(&sh, &rx) {
        if sh.stale(s.epoch) {
            continue;
        }
        let seq = s.seq;
        let t = &mut *s.tensors;
        let result = catch_unwind(AssertUnwindSafe(|| {
            sh.stages.post_stage(t);
            sh.processor.post(s.frame, t)
        }));
        let kind = match result {
            Ok(Ok(out)) => DoneKind::Frame {
                out,
                _permit: s.permit,
                t0: s.t0,
            },
            Ok(Err(e)) => DoneKind::Error(e),
            Err(p) => DoneKind::Error(Error::Panic(panic_message(p))),
        };
        sh.done(seq, kind);
    }
}

/// What the tests of the queue and of the stages it runs share.
#[cfg(test)]
pub(crate) mod support {
    use super::*;
    use crate::backend::Backend;
    use std::ops::Deref;

    /// A queue, shut down when the test ends (even when it fails).
    pub(crate) struct Guard<P: Processor, E: Send + 'static>(pub(crate) Arc<FrameQueue<P, E>>);

    impl<P: Processor, E: Send + 'static> Deref for Guard<P, E> {
        type Target = FrameQueue<P, E>;
        fn deref(&self) -> &FrameQueue<P, E> {
            &self.0
        }
    }

    impl<P: Processor, E: Send + 'static> Drop for Guard<P, E> {
        fn drop(&mut self) {
            self.0.shutdown();
        }
    }

    impl<P: Processor, E: Send + 'static> Guard<P, E> {
        pub(crate) fn arc(&self) -> Arc<FrameQueue<P, E>> {
            self.0.clone()
        }
    }

    /// A queue configuration with size multiple 8.
    pub(crate) fn config(batch_size: usize, max_in_flight: usize, workers: usize) -> QueueConfig {
        QueueConfig {
            batch_size,
            max_in_flight,
            workers,
            size_multiple: 8,
        }
    }

    pub(crate) fn tunables(leaky: bool, noise_level: f32, batch_timeout: Duration) -> Arc<Tunables> {
        Arc::new(Tunables::new(leaky, noise_level, batch_timeout))
    }

    /// A thread calling `recv` in a loop, forwarding everything but `Flushing`
    /// (it stops after `Closed`).
    pub(crate) fn spawn_receiver<P: Processor, E: Send + 'static>(
        q: Arc<FrameQueue<P, E>>,
    ) -> Receiver<Recv<P::Output, E>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || loop {
            let r = q.recv();
            match r {
                Recv::Flushing => std::thread::sleep(Duration::from_millis(1)),
                Recv::Closed => {
                    let _ = tx.send(r);
                    return;
                }
                Recv::Item(_) => {
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            }
        });
        rx
    }

    /// A factory that hands out `backend` as it is.
    pub(crate) fn factory_of<B: Backend + 'static>(backend: B) -> BackendFactory {
        Box::new(move || Ok(Box::new(backend) as Box<dyn Backend>))
    }
}

#[cfg(test)]
mod tests {
    //! Engine tests of the queue with a fake processor and fake backends (no
    //! GStreamer, no ONNX Runtime). Things that must happen are awaited for up to
    //! `WAIT`; things that must not happen are watched for `QUIET`.
    use super::support::{self, config, factory_of, spawn_receiver, tunables};
    use super::*;
    use crate::backend::Backend;
    use crossbeam_channel::TryRecvError;
    use std::collections::HashSet;
    use std::thread;

    /// The most any awaited step may take before the test fails.
    const WAIT: Duration = Duration::from_secs(5);
    /// How long a call is watched to make sure it stays blocked.
    const QUIET: Duration = Duration::from_millis(300);
    /// The longest a gated fake backend waits for its gate.
    const GATE_BACKSTOP: Duration = Duration::from_secs(60);

    #[derive(Debug, Clone, PartialEq)]
    struct TestFrame {
        id: u64,
        width: usize,
        height: usize,
    }

    fn frame(id: u64) -> TestFrame {
        sized(id, 8, 8)
    }

    fn sized(id: u64, width: usize, height: usize) -> TestFrame {
        TestFrame { id, width, height }
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Out {
        id: u64,
        /// `image[0]` after inference: `id + add` for frames filled with their id.
        value: f32,
        padded: (usize, usize),
        denoised: bool,
    }

    #[derive(Default)]
    struct TestProc {
        size_multiple: usize,
        /// Sleep a little, differently per frame, in pre and post so that workers finish out of order.
        jitter: bool,
        pre_panic_on: Option<u64>,
        pre_error_on: Option<u64>,
        post_panic_on: Option<u64>,
    }

    fn jitter(id: u64, salt: u64) {
        let us = (id.wrapping_mul(2_654_435_761).wrapping_add(salt) % 5) * 150;
        if us > 0 {
            thread::sleep(Duration::from_micros(us));
        }
    }

    impl Processor for TestProc {
        type Frame = TestFrame;
        type Output = Out;

        fn pre(&self, f: &mut TestFrame, t: &mut Tensors) -> Result<()> {
            if self.pre_panic_on == Some(f.id) {
                panic!("injected pre panic on frame {}", f.id);
            }
            if self.pre_error_on == Some(f.id) {
                return Err(Error::Frame(format!("injected pre error on frame {}", f.id)));
            }
            if self.jitter {
                jitter(f.id, 1);
            }
            t.set_size(f.width, f.height, self.size_multiple);
            t.image.fill(f.id as f32);
            Ok(())
        }

        fn post(&self, f: TestFrame, t: &mut Tensors) -> Result<Out> {
            if self.post_panic_on == Some(f.id) {
                panic!("injected post panic on frame {}", f.id);
            }
            if self.jitter {
                jitter(f.id, 2);
            }
            Ok(Out {
                id: f.id,
                value: t.image[0],
                padded: (t.pw, t.ph),
                denoised: t.denoised,
            })
        }
    }

    /// What the backend saw in one `run`.
    #[derive(Debug, Clone)]
    struct BatchLog {
        /// `image[0]` of each frame: its id for frames filled with their id.
        ids: Vec<u64>,
        padded: (usize, usize),
    }

    type Log = Arc<Mutex<Vec<BatchLog>>>;

    /// A configurable fake backend: adds `add` to every sample, optionally waiting on
    /// `gate` (one message per batch, or the sender dropped to open it for good),
    /// sleeping, failing or panicking on a chosen frame.
    #[derive(Default)]
    struct FakeBackend {
        add: f32,
        sleep: Duration,
        gate: Option<Receiver<()>>,
        started: Option<Sender<Vec<u64>>>,
        fail_on: Option<u64>,
        panic_on: Option<u64>,
        log: Log,
    }

    impl Backend for FakeBackend {
        fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
            let ids: Vec<u64> = batch.iter().map(|t| t.image[0] as u64).collect();
            lock(&self.log).push(BatchLog {
                ids: ids.clone(),
                padded: (batch[0].pw, batch[0].ph),
            });
            for t in batch.iter() {
                assert_eq!(
                    (t.pw, t.ph),
                    (batch[0].pw, batch[0].ph),
                    "mixed padded sizes in one batch"
                );
            }
            if let Some(s) = &self.started {
                let _ = s.send(ids.clone());
            }
            if let Some(g) = &self.gate {
                // The backstop turns a test that fails with the gate shut (its queue's
                // shutdown waits for this batch) into a failure instead of a hang.
                let _ = g.recv_timeout(GATE_BACKSTOP);
            }
            if !self.sleep.is_zero() {
                thread::sleep(self.sleep);
            }
            if let Some(bad) = self.fail_on.filter(|b| ids.contains(b)) {
                return Err(Error::Ort(format!("injected failure on frame {bad}")));
            }
            if let Some(bad) = self.panic_on.filter(|b| ids.contains(b)) {
                panic!("injected backend panic on frame {bad}");
            }
            for t in batch.iter_mut() {
                for v in t.image.iter_mut() {
                    *v += self.add;
                }
                t.denoised = true;
            }
            Ok(())
        }
    }

    type R = Recv<Out, u64>;

    type Guard = support::Guard<TestProc, u64>;

    fn proc_(size_multiple: usize) -> TestProc {
        TestProc {
            size_multiple,
            ..TestProc::default()
        }
    }

    fn start(cfg: QueueConfig, tun: Arc<Tunables>, p: TestProc, factory: BackendFactory) -> Guard {
        support::Guard(Arc::new(
            FrameQueue::new(cfg, tun, Arc::new(p), Arc::new(NoStages), factory).expect("queue starts"),
        ))
    }

    /// Runs `f` on its own thread; its result arrives on the returned channel.
    fn spawn_call<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx
    }

    /// What came out, in a comparable form.
    #[derive(Debug, PartialEq)]
    enum Item {
        Frame { id: u64, after_drop: bool },
        Event(u64),
        Error(String),
    }

    fn item(r: R) -> Item {
        match r {
            Recv::Item(Output::Frame { out, after_drop, .. }) => Item::Frame { id: out.id, after_drop },
            Recv::Item(Output::Event(e)) => Item::Event(e),
            Recv::Item(Output::Error(e)) => Item::Error(e.to_string()),
            other => panic!("expected an item, got {other:?}"),
        }
    }

    fn next(rx: &Receiver<R>) -> R {
        rx.recv_timeout(WAIT).expect("recv gave nothing in time")
    }

    fn next_item(rx: &Receiver<R>) -> Item {
        item(next(rx))
    }

    fn next_frame(rx: &Receiver<R>) -> (Out, bool) {
        match next(rx) {
            Recv::Item(Output::Frame { out, after_drop, .. }) => (out, after_drop),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    fn next_error(rx: &Receiver<R>) -> Error {
        match next(rx) {
            Recv::Item(Output::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let end = Instant::now() + WAIT;
        while !cond() {
            assert!(Instant::now() < end, "timed out waiting until {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn batch_ids(log: &Log) -> Vec<Vec<u64>> {
        lock(log).iter().map(|b| b.ids.clone()).collect()
    }

    // ---------------------------------------------------------------------
    // Order
    // ---------------------------------------------------------------------

    #[test]
    fn frames_and_events_come_out_in_submission_order_with_4_workers_and_batch_sizes_1_3_8() {
        for batch in [1, 3, 8] {
            let log = Log::default();
            let backend = FakeBackend {
                add: 0.5,
                log: log.clone(),
                ..FakeBackend::default()
            };
            let p = TestProc {
                size_multiple: 8,
                jitter: true,
                ..TestProc::default()
            };
            let q = start(
                config(batch, 16, 4),
                tunables(false, 0.0, Duration::from_millis(2)),
                p,
                factory_of(backend),
            );
            let rx = spawn_receiver(q.arc());
            let n = 120u64;
            let mut expected = Vec::new();
            for i in 0..n {
                if i % 7 == 3 {
                    q.submit_event(1000 + i).unwrap();
                    expected.push(Item::Event(1000 + i));
                }
                assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
                assert!(q.in_flight() <= 16, "in flight {}", q.in_flight());
                expected.push(Item::Frame {
                    id: i,
                    after_drop: false,
                });
            }
            q.submit_event(9999).unwrap();
            expected.push(Item::Event(9999));

            let mut got = Vec::new();
            for _ in 0..expected.len() {
                match next(&rx) {
                    Recv::Item(Output::Frame { out, after_drop, .. }) => {
                        assert_eq!(
                            out.value,
                            out.id as f32 + 0.5,
                            "batch {batch}: backend result of {}",
                            out.id
                        );
                        assert!(out.denoised);
                        got.push(Item::Frame { id: out.id, after_drop });
                    }
                    other => got.push(item(other)),
                }
            }
            assert_eq!(got, expected, "batch size {batch}");

            let batches = batch_ids(&log);
            assert!(
                batches.iter().all(|b| !b.is_empty() && b.len() <= batch),
                "batch size {batch}: {batches:?}"
            );
            let mut seen: Vec<u64> = batches.concat();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "every frame inferred exactly once");
            let s = q.stats().snapshot();
            assert_eq!(s.processed, n);
            assert_eq!(s.dropped, 0);
            assert_eq!(s.batches, batches.len() as u64);
            q.shutdown();
            assert!(matches!(next(&rx), Recv::Closed));
        }
    }

    // ---------------------------------------------------------------------
    // Batching
    // ---------------------------------------------------------------------

    #[test]
    fn batches_fill_to_batch_size_and_a_partial_batch_runs_after_the_timeout() {
        let log = Log::default();
        let backend = FakeBackend {
            log: log.clone(),
            ..FakeBackend::default()
        };
        let timeout = Duration::from_millis(300);
        let q = start(
            config(4, 16, 1),
            tunables(false, 0.0, timeout),
            proc_(8),
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 0..10 {
            assert_eq!(next_frame(&rx).0.id, i);
        }
        let elapsed = t0.elapsed();
        assert_eq!(batch_ids(&log), vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        // The last two frames waited for the batch timeout before running alone.
        assert!(elapsed >= timeout, "partial batch ran after {elapsed:?}");
        assert_eq!(q.stats().snapshot().batches, 3);
    }

    #[test]
    fn frames_of_different_padded_sizes_are_never_batched_together() {
        let log = Log::default();
        let backend = FakeBackend {
            log: log.clone(),
            ..FakeBackend::default()
        };
        let q = start(
            config(4, 16, 1),
            tunables(false, 0.0, Duration::from_millis(200)),
            proc_(32),
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        // Frame sizes and the padded size (multiple of 32) each gets.
        let frames = [
            (64, 64, (64, 64)),
            (50, 40, (64, 64)), // a different size, the same padded size: may share a batch
            (70, 64, (96, 64)), // the size changes mid-stream
            (96, 64, (96, 64)),
            (90, 33, (96, 64)),
            (64, 64, (64, 64)), // and back
        ];
        for (i, &(w, h, _)) in frames.iter().enumerate() {
            assert_eq!(q.submit(sized(i as u64, w, h)), Ok(Submitted::Queued));
        }
        for (i, &(_, _, padded)) in frames.iter().enumerate() {
            let (out, _) = next_frame(&rx);
            assert_eq!((out.id, out.padded), (i as u64, padded));
        }
        let batches: Vec<(Vec<u64>, (usize, usize))> = lock(&log).iter().map(|b| (b.ids.clone(), b.padded)).collect();
        assert_eq!(
            batches,
            vec![(vec![0, 1], (64, 64)), (vec![2, 3, 4], (96, 64)), (vec![5], (64, 64))]
        );
    }

    // ---------------------------------------------------------------------
    // Bounded memory
    // ---------------------------------------------------------------------

    #[test]
    fn submit_blocks_once_max_in_flight_frames_are_in_flight_until_one_is_received() {
        let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
        let backend = FakeBackend {
            gate: Some(gate),
            ..FakeBackend::default()
        };
        let stats_q = start(
            config(1, 4, 2),
            tunables(false, 0.0, Duration::ZERO),
            proc_(8),
            factory_of(backend),
        );
        let q = stats_q.arc();
        for i in 0..4 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        assert_eq!(q.in_flight(), 4);
        let q2 = q.clone();
        let fifth = spawn_call(move || q2.submit(frame(4)));
        assert_eq!(
            fifth.recv_timeout(QUIET),
            Err(RecvTimeoutError::Timeout),
            "submit returned with max-in-flight frames in flight"
        );
        // Inference finishing is not enough: results waiting for recv still count.
        drop(gate_tx);
        let stats = q.stats();
        wait_until("the backend ran the 4 frames", || stats.snapshot().batches >= 4);
        assert_eq!(fifth.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
        assert_eq!(q.in_flight(), 4);
        // Receiving one frame makes room.
        let rx = spawn_receiver(q.clone());
        assert_eq!(next_frame(&rx).0.id, 0);
        assert_eq!(fifth.recv_timeout(WAIT), Ok(Ok(Submitted::Queued)));
        for i in 1..5 {
            assert_eq!(next_frame(&rx).0.id, i);
        }
        wait_until("all permits are released", || q.in_flight() == 0);
    }

    // ---------------------------------------------------------------------
    // Leaky
    // ---------------------------------------------------------------------

    #[test]
    fn leaky_submit_never_blocks_and_drops_the_oldest_waiting_frame() {
        let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
        let (started_tx, started) = crossbeam_channel::unbounded();
        let backend = FakeBackend {
            gate: Some(gate),
            started: Some(started_tx),
            ..FakeBackend::default()
        };
        let q = start(
            config(1, 4, 1),
            tunables(true, 0.0, Duration::ZERO),
            proc_(8),
            factory_of(backend),
        );
        assert_eq!(q.submit(frame(0)), Ok(Submitted::Queued));
        assert_eq!(
            started.recv_timeout(WAIT),
            Ok(vec![0]),
            "frame 0 is in the (blocked) backend"
        );
        let n = 31u64;
        let q2 = q.arc();
        let results = spawn_call(move || (1..n).map(|i| (i, q2.submit(frame(i)))).collect::<Vec<_>>())
            .recv_timeout(WAIT)
            .expect("leaky submit blocked");
        let mut dropped = HashSet::new();
        for (i, r) in results {
            match r {
                Ok(Submitted::Queued) => assert!(i < 4, "frame {i} queued with the queue full and nothing dropped"),
                Ok(Submitted::QueuedDroppedOldest(old)) => {
                    assert!(i >= 4, "frame {i}: dropped {} with room left", old.id);
                    assert!(old.id < i && old.id > 0, "frame {i}: dropped frame {}", old.id);
                    assert!(dropped.insert(old.id), "frame {} handed back twice", old.id);
                }
                other => panic!("frame {i}: {other:?} (a frame always waits here)"),
            }
        }
        assert_eq!(dropped.len() as u64, n - 4, "one drop per submit beyond max-in-flight");
        assert_eq!(q.stats().snapshot().dropped, dropped.len() as u64);

        drop(gate_tx);
        let rx = spawn_receiver(q.arc());
        let mut outputs = Vec::new();
        let mut prev: Option<u64> = None;
        for _ in 0..(n - dropped.len() as u64) {
            let (out, after_drop) = next_frame(&rx);
            assert!(
                prev.is_none_or(|p| out.id > p),
                "out of order: {} after {prev:?}",
                out.id
            );
            let gap = out.id != prev.map_or(0, |p| p + 1);
            assert_eq!(
                after_drop, gap,
                "after_drop of frame {} (previous output {prev:?})",
                out.id
            );
            prev = Some(out.id);
            outputs.push(out.id);
        }
        assert_eq!(outputs[0], 0);
        let all: HashSet<u64> = outputs.iter().copied().chain(dropped.iter().copied()).collect();
        assert_eq!(
            all.len() as u64,
            n,
            "outputs and dropped frames are disjoint and cover everything"
        );
        assert_eq!(q.stats().snapshot().processed, outputs.len() as u64);
        q.shutdown();
        assert!(matches!(next(&rx), Recv::Closed), "nothing else came out");
    }

    /// Drives a leaky queue to `DroppedNew`: two frames are inferred and wait for `recv`
    /// (nothing waits for inference), and a third is submitted. Returns the queue and
    /// its receiver after the drop.
    fn leaky_queue_after_dropped_new() -> (Guard, Receiver<R>) {
        let log = Log::default();
        let backend = FakeBackend {
            log: log.clone(),
            ..FakeBackend::default()
        };
        let q = start(
            config(2, 2, 1),
            tunables(true, 0.0, Duration::from_millis(1)),
            proc_(8),
            factory_of(backend),
        );
        assert_eq!(q.submit(frame(0)), Ok(Submitted::Queued));
        assert_eq!(q.submit(frame(1)), Ok(Submitted::Queued));
        wait_until("both frames are inferred", || batch_ids(&log).concat().len() == 2);
        let q2 = q.arc();
        let r = spawn_call(move || q2.submit(frame(2)))
            .recv_timeout(WAIT)
            .expect("leaky submit blocked");
        assert_eq!(r, Ok(Submitted::DroppedNew(frame(2))));
        assert_eq!(q.stats().snapshot().dropped, 1);
        let rx = spawn_receiver(q.arc());
        (q, rx)
    }

    #[test]
    fn leaky_drops_and_hands_back_the_new_frame_when_no_frame_waits() {
        let (q, rx) = leaky_queue_after_dropped_new();
        let (a, a_drop) = next_frame(&rx);
        let (b, b_drop) = next_frame(&rx);
        assert_eq!((a.id, b.id), (0, 1));
        assert_eq!(q.submit(frame(3)), Ok(Submitted::Queued));
        let (c, c_drop) = next_frame(&rx);
        assert_eq!(c.id, 3);
        // outputs (3) + dropped (1) == submitted (4), and the drop is flagged once.
        assert_eq!([a_drop, b_drop, c_drop].iter().filter(|&&d| d).count(), 1);
        let s = q.stats().snapshot();
        assert_eq!((s.processed, s.dropped), (3, 1));
    }

    #[test]
    fn after_drop_marks_the_frame_right_after_a_dropped_new_frame() {
        let (q, rx) = leaky_queue_after_dropped_new();
        let (a, a_drop) = next_frame(&rx);
        let (b, b_drop) = next_frame(&rx);
        assert_eq!(q.submit(frame(3)), Ok(Submitted::Queued));
        let (c, c_drop) = next_frame(&rx);
        assert_eq!(
            [(a.id, a_drop), (b.id, b_drop), (c.id, c_drop)],
            [(0, false), (1, false), (3, true)],
            "only the frame after the gap is DISCONT"
        );
    }

    // ---------------------------------------------------------------------
    // Flush
    // ---------------------------------------------------------------------

    #[test]
    fn flush_start_wakes_a_blocked_submit_and_a_blocked_recv() {
        let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
        let (started_tx, started) = crossbeam_channel::unbounded();
        let backend = FakeBackend {
            gate: Some(gate),
            started: Some(started_tx),
            ..FakeBackend::default()
        };
        let q = start(
            config(1, 2, 1),
            tunables(false, 0.0, Duration::ZERO),
            proc_(8),
            factory_of(backend),
        );
        assert_eq!(q.submit(frame(0)), Ok(Submitted::Queued));
        assert_eq!(started.recv_timeout(WAIT), Ok(vec![0]));
        assert_eq!(q.submit(frame(1)), Ok(Submitted::Queued));
        let q2 = q.arc();
        let blocked_submit = spawn_call(move || q2.submit(frame(2)));
        let q3 = q.arc();
        let blocked_recv = spawn_call(move || q3.recv());
        assert_eq!(blocked_submit.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
        assert!(
            matches!(blocked_recv.try_recv(), Err(TryRecvError::Empty)),
            "recv returned with nothing done"
        );

        q.flush_start();
        assert_eq!(blocked_submit.recv_timeout(WAIT), Ok(Err(Refused::Flushing)));
        assert!(matches!(blocked_recv.recv_timeout(WAIT), Ok(Recv::Flushing)));
        // While flushing everything is refused at once.
        assert!(q.is_flushing());
        assert_eq!(q.submit(frame(3)), Err(Refused::Flushing));
        assert_eq!(q.submit_event(7), Err(Refused::Flushing));
        assert!(matches!(q.recv(), Recv::Flushing));
        q.flush_stop();
        assert!(!q.is_flushing());
        drop(gate_tx); // frame 0 leaves the backend, so the queue can shut down
    }

    #[test]
    fn after_flush_stop_only_frames_and_events_submitted_after_the_flush_come_out() {
        let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
        let (started_tx, started) = crossbeam_channel::unbounded();
        let backend = FakeBackend {
            gate: Some(gate),
            started: Some(started_tx),
            ..FakeBackend::default()
        };
        let q = start(
            config(1, 4, 2),
            tunables(false, 0.0, Duration::ZERO),
            proc_(8),
            factory_of(backend),
        );
        // Before the flush: frame 0 finishes and waits for recv, frame 1 is in the
        // backend, frame 2 waits for inference, two events are queued.
        assert_eq!(q.submit(frame(0)), Ok(Submitted::Queued));
        q.submit_event(100).unwrap();
        assert_eq!(q.submit(frame(1)), Ok(Submitted::Queued));
        assert_eq!(q.submit(frame(2)), Ok(Submitted::Queued));
        q.submit_event(101).unwrap();
        assert_eq!(started.recv_timeout(WAIT), Ok(vec![0]));
        gate_tx.send(()).unwrap();
        assert_eq!(started.recv_timeout(WAIT), Ok(vec![1]));
        let stats = q.stats();
        wait_until("frame 0 is inferred", || stats.snapshot().batches >= 1);

        q.flush_start();
        q.flush_stop();
        // Frame 1 leaves the backend only now, after the flush.
        drop(gate_tx);

        let rx = spawn_receiver(q.arc());
        let mut expected = vec![Item::Event(200)];
        q.submit_event(200).unwrap();
        for i in 10..17 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
            expected.push(Item::Frame {
                id: i,
                after_drop: false,
            });
        }
        q.submit_event(201).unwrap();
        expected.push(Item::Event(201));
        let got: Vec<Item> = (0..expected.len()).map(|_| next_item(&rx)).collect();
        assert_eq!(got, expected);
        wait_until("stale frames release their permits", || q.in_flight() == 0);
        q.shutdown();
        assert!(
            matches!(next(&rx), Recv::Closed),
            "nothing from before the flush came out"
        );
    }

    // ---------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------

    #[test]
    fn backend_error_comes_out_at_the_failing_frames_position_and_the_queue_goes_on() {
        let backend = FakeBackend {
            fail_on: Some(5),
            ..FakeBackend::default()
        };
        let p = TestProc {
            size_multiple: 8,
            jitter: true,
            ..TestProc::default()
        };
        let q = start(
            config(1, 8, 4),
            tunables(false, 0.0, Duration::ZERO),
            p,
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        for i in 0..12 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 0..12 {
            match next_item(&rx) {
                Item::Error(msg) if i == 5 => assert!(msg.contains("injected failure on frame 5"), "{msg}"),
                got => assert_eq!(
                    got,
                    Item::Frame {
                        id: i,
                        after_drop: false
                    }
                ),
            }
        }
        wait_until("permits are released", || q.in_flight() == 0);
    }

    #[test]
    fn backend_error_fails_every_frame_of_its_batch() {
        let log = Log::default();
        let backend = FakeBackend {
            fail_on: Some(5),
            log: log.clone(),
            ..FakeBackend::default()
        };
        let q = start(
            config(4, 8, 1),
            tunables(false, 0.0, Duration::from_millis(500)),
            proc_(8),
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        for i in 0..12 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 0..12 {
            let got = next_item(&rx);
            if (4..8).contains(&i) {
                assert!(
                    matches!(&got, Item::Error(m) if m.contains("injected failure on frame 5")),
                    "frame {i}: {got:?}"
                );
            } else {
                assert_eq!(
                    got,
                    Item::Frame {
                        id: i,
                        after_drop: false
                    }
                );
            }
        }
        assert_eq!(
            batch_ids(&log),
            vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9, 10, 11]]
        );
        wait_until("permits are released", || q.in_flight() == 0);
    }

    #[test]
    fn backend_panic_becomes_an_error_at_its_position_not_a_hang() {
        let backend = FakeBackend {
            panic_on: Some(3),
            ..FakeBackend::default()
        };
        let q = start(
            config(1, 4, 2),
            tunables(false, 0.0, Duration::ZERO),
            proc_(8),
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        for i in 0..8 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 0..8 {
            if i == 3 {
                let e = next_error(&rx);
                // The panic message survives (as Error::Ort "worker panicked: ...", see
                // backend_failures_keep_their_error_variant_and_message).
                let msg = e.to_string();
                assert!(msg.contains("injected backend panic on frame 3"), "{msg}");
                assert!(msg.contains("worker panicked"), "{msg}");
            } else {
                assert_eq!(
                    next_item(&rx),
                    Item::Frame {
                        id: i,
                        after_drop: false
                    }
                );
            }
        }
    }

    #[test]
    fn backend_failures_keep_their_error_variant_and_message() {
        let backend = FakeBackend {
            panic_on: Some(1),
            fail_on: Some(2),
            ..FakeBackend::default()
        };
        let q = start(
            config(1, 4, 1),
            tunables(false, 0.0, Duration::ZERO),
            proc_(8),
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        for i in 0..3 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        assert_eq!(next_frame(&rx).0.id, 0);
        let panicked = next_error(&rx);
        let failed = next_error(&rx);
        assert_eq!(
            (
                matches!(&panicked, Error::Panic(m) if m.contains("injected backend panic")),
                failed.to_string()
            ),
            (true, "ONNX Runtime: injected failure on frame 2".to_string()),
            "panic came out as {panicked:?}"
        );
    }

    #[test]
    fn pre_processing_panic_and_error_become_errors_at_their_positions() {
        let p = TestProc {
            size_multiple: 8,
            jitter: true,
            pre_panic_on: Some(2),
            pre_error_on: Some(4),
            ..TestProc::default()
        };
        let q = start(
            config(2, 4, 2),
            tunables(false, 0.0, Duration::from_millis(2)),
            p,
            factory_of(FakeBackend::default()),
        );
        let rx = spawn_receiver(q.arc());
        for i in 0..8 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 0..8 {
            match i {
                2 => {
                    let e = next_error(&rx);
                    assert!(
                        matches!(&e, Error::Panic(m) if m.contains("injected pre panic on frame 2")),
                        "{e:?}"
                    );
                }
                4 => {
                    let e = next_error(&rx);
                    assert!(
                        matches!(&e, Error::Frame(m) if m.contains("injected pre error on frame 4")),
                        "{e:?}"
                    );
                }
                _ => assert_eq!(
                    next_item(&rx),
                    Item::Frame {
                        id: i,
                        after_drop: false
                    }
                ),
            }
        }
        wait_until("permits are released", || q.in_flight() == 0);
    }

    #[test]
    fn post_processing_panic_becomes_an_error_at_its_position() {
        let p = TestProc {
            size_multiple: 8,
            post_panic_on: Some(1),
            ..TestProc::default()
        };
        let q = start(
            config(1, 4, 2),
            tunables(false, 0.0, Duration::ZERO),
            p,
            factory_of(FakeBackend::default()),
        );
        let rx = spawn_receiver(q.arc());
        for i in 0..4 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        assert_eq!(
            next_item(&rx),
            Item::Frame {
                id: 0,
                after_drop: false
            }
        );
        let e = next_error(&rx);
        assert!(
            matches!(&e, Error::Panic(m) if m.contains("injected post panic on frame 1")),
            "{e:?}"
        );
        assert_eq!(
            next_item(&rx),
            Item::Frame {
                id: 2,
                after_drop: false
            }
        );
        assert_eq!(
            next_item(&rx),
            Item::Frame {
                id: 3,
                after_drop: false
            }
        );
        wait_until("permits are released", || q.in_flight() == 0);
    }

    #[test]
    fn failing_backend_factory_makes_recv_return_an_error_promptly() {
        let factory: BackendFactory = Box::new(|| {
            Err(Error::Provider {
                provider: "fake".into(),
                message: "injected build failure".into(),
            })
        });
        let q = start(config(2, 4, 2), tunables(false, 0.0, Duration::ZERO), proc_(8), factory);
        let rx = spawn_receiver(q.arc());
        let e = next_error(&rx);
        assert!(e.to_string().contains("injected build failure"), "{e}");
        // Submitting never blocks afterwards: frames are discarded and release their permits.
        let q2 = q.arc();
        let submitted = spawn_call(move || (0..12).map(|i| q2.submit(frame(i))).collect::<Vec<_>>())
            .recv_timeout(WAIT)
            .expect("submit blocked behind a failed backend");
        assert!(submitted.iter().all(|r| r == &Ok(Submitted::Queued)));
        let t = Instant::now();
        q.shutdown();
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn panicking_backend_factory_makes_recv_return_an_error_promptly() {
        let factory: BackendFactory = Box::new(|| panic!("injected factory panic"));
        let q = start(config(1, 4, 1), tunables(false, 0.0, Duration::ZERO), proc_(8), factory);
        assert_eq!(q.submit(frame(0)), Ok(Submitted::Queued));
        let rx = spawn_receiver(q.arc());
        let e = next_error(&rx);
        assert!(e.to_string().contains("injected factory panic"), "{e}");
    }

    #[test]
    fn failed_factory_still_lets_events_queued_behind_frames_come_out() {
        let factory: BackendFactory = Box::new(|| Err(Error::Ort("injected build failure".into())));
        let q = start(config(1, 4, 1), tunables(false, 0.0, Duration::ZERO), proc_(8), factory);
        assert_eq!(q.submit(frame(0)), Ok(Submitted::Queued));
        q.submit_event(42).unwrap();
        let rx = spawn_receiver(q.arc());
        // Errors (the build failure, and perhaps one per frame) and then the event.
        loop {
            match next_item(&rx) {
                Item::Error(_) => continue,
                Item::Event(e) => {
                    assert_eq!(e, 42);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    // ---------------------------------------------------------------------
    // Shutdown
    // ---------------------------------------------------------------------

    /// Sets its flag when dropped: tells whether a backend outlived `shutdown`.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A fake backend that sets `dropped` when it is dropped.
    struct Flagged(FakeBackend, #[allow(dead_code)] DropFlag);

    impl Backend for Flagged {
        fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
            self.0.run(batch)
        }
    }

    #[test]
    fn shutdown_waits_for_the_batch_in_the_backend_and_discards_the_frames_behind_it() {
        let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
        let (started_tx, started) = crossbeam_channel::unbounded();
        let log = Log::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let backend = Flagged(
            FakeBackend {
                gate: Some(gate),
                started: Some(started_tx),
                log: log.clone(),
                ..FakeBackend::default()
            },
            DropFlag(dropped.clone()),
        );
        let q = start(
            config(2, 6, 2),
            tunables(false, 0.0, Duration::ZERO),
            proc_(8),
            Box::new(move || Ok(Box::new(backend) as Box<dyn Backend>)),
        );
        for i in 0..6 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        q.submit_event(1).unwrap();
        assert_eq!(started.recv_timeout(WAIT), Ok(vec![0, 1]), "a batch is in the backend");
        let q2 = q.arc();
        let shutdown = spawn_call(move || q2.shutdown());
        assert_eq!(
            shutdown.recv_timeout(QUIET),
            Err(RecvTimeoutError::Timeout),
            "shutdown returned with a batch still in the backend"
        );
        // Already closed while it waits.
        assert!(matches!(q.recv(), Recv::Closed));
        assert_eq!(q.submit(frame(9)), Err(Refused::Closed));
        assert_eq!(q.submit_event(2), Err(Refused::Closed));
        drop(gate_tx);
        shutdown
            .recv_timeout(WAIT)
            .expect("shutdown returns once the batch is done");
        assert!(dropped.load(Ordering::SeqCst), "the backend outlived shutdown");
        assert_eq!(
            batch_ids(&log),
            vec![vec![0, 1]],
            "frames behind the batch ran after shutdown"
        );
    }

    #[test]
    fn shutdown_wakes_a_blocked_submit_and_a_blocked_recv_with_closed_at_once() {
        let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
        let backend = FakeBackend {
            gate: Some(gate),
            ..FakeBackend::default()
        };
        let q = start(
            config(1, 2, 1),
            tunables(false, 0.0, Duration::ZERO),
            proc_(8),
            factory_of(backend),
        );
        assert_eq!(q.submit(frame(0)), Ok(Submitted::Queued));
        assert_eq!(q.submit(frame(1)), Ok(Submitted::Queued));
        let q2 = q.arc();
        let blocked_submit = spawn_call(move || q2.submit(frame(2)));
        let q3 = q.arc();
        let blocked_recv = spawn_call(move || q3.recv());
        assert_eq!(blocked_submit.recv_timeout(QUIET), Err(RecvTimeoutError::Timeout));
        assert!(matches!(blocked_recv.try_recv(), Err(TryRecvError::Empty)));
        let q4 = q.arc();
        let shutdown = spawn_call(move || q4.shutdown());
        // Both are woken while shutdown still waits for the gated backend.
        assert_eq!(blocked_submit.recv_timeout(WAIT), Ok(Err(Refused::Closed)));
        assert!(matches!(blocked_recv.recv_timeout(WAIT), Ok(Recv::Closed)));
        drop(gate_tx);
        shutdown.recv_timeout(WAIT).expect("shutdown returns");
    }

    #[test]
    fn shutdown_waits_for_a_backend_still_being_built_and_drops_it_before_returning() {
        let (gate_tx, gate) = crossbeam_channel::unbounded::<()>();
        let (building_tx, building) = crossbeam_channel::unbounded::<()>();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let factory: BackendFactory = Box::new(move || {
            let _ = building_tx.send(());
            // A slow build (a TensorRT engine, say): until the test lets it finish.
            let _ = gate.recv_timeout(GATE_BACKSTOP);
            Ok(Box::new(Flagged(FakeBackend::default(), flag)) as Box<dyn Backend>)
        });
        let q = start(config(1, 4, 2), tunables(false, 0.0, Duration::ZERO), proc_(8), factory);
        building.recv_timeout(WAIT).expect("the factory runs");
        assert_eq!(q.submit(frame(0)), Ok(Submitted::Queued));
        assert_eq!(q.submit(frame(1)), Ok(Submitted::Queued));
        let q2 = q.arc();
        let shutdown = spawn_call(move || q2.shutdown());
        assert_eq!(
            shutdown.recv_timeout(QUIET),
            Err(RecvTimeoutError::Timeout),
            "shutdown returned while the backend was still being built: the build outlives it"
        );
        assert!(matches!(q.recv(), Recv::Closed));
        assert_eq!(q.submit(frame(2)), Err(Refused::Closed));
        drop(gate_tx);
        shutdown
            .recv_timeout(WAIT)
            .expect("shutdown returns once the build is done");
        assert!(dropped.load(Ordering::SeqCst), "the backend outlived shutdown");
    }
}
