//! The multi-threaded frame queue that keeps the inference device busy.
//!
//! ```text
//! submit() --> pre workers --> inference thread --> post workers --> recv() in order
//! (caller)     (Processor::pre,   (batches of up to     (logits -> labels,     (reorders by
//!              noise estimate)    batch_size frames,    Processor::post)       sequence number)
//!                                 Backend::run)
//! ```
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
use std::ops::{Deref, DerefMut};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::model::round_up;
use crate::noise::{SigmaEstimator, SigmaSmoother};
use crate::{convert, Error, Result};

/// Per-frame tensors: the padded planar input image, and the model's results.
/// Reused from frame to frame through a pool.
#[derive(Debug, Default)]
pub struct Tensors {
    /// Frame size.
    pub width: usize,
    pub height: usize,
    /// Padded size fed to the model (multiples of the model's `size_multiple`).
    pub pw: usize,
    pub ph: usize,
    /// Planar RGB float [3, ph, pw] in [0,1]: the input, replaced by the model's
    /// `denoised` output after inference when the model has one (`denoised` is then set).
    pub image: Vec<f32>,
    pub denoised: bool,
    /// Class map [ph, pw] (row stride `pw`), valid when `has_labels`.
    pub labels: Vec<u8>,
    pub has_labels: bool,
    /// Raw logits [classes, lh, lw] when the model gives logits, `logits_shape` = [classes, lh, lw].
    pub logits: Vec<f32>,
    pub logits_shape: [usize; 3],
    /// Per-frame noise estimate ([0,1] scale), or -1 when not estimated.
    pub sigma_estimate: f32,
    /// The sigma fed to the model ([0,1] scale).
    pub sigma: f32,
}

impl Tensors {
    fn prepare(&mut self, width: usize, height: usize, pw: usize, ph: usize) {
        self.width = width;
        self.height = height;
        self.pw = pw;
        self.ph = ph;
        // Vec::resize reallocates only when the size grows (a caps change).
        self.image.resize(3 * pw * ph, 0.0);
        self.labels.resize(pw * ph, 0);
        self.denoised = false;
        self.has_labels = false;
        self.logits_shape = [0; 3];
        self.sigma_estimate = -1.0;
        self.sigma = 0.0;
    }
}

/// A pooled [`Tensors`]: returns to its pool when dropped.
pub struct Pooled {
    tensors: Option<Box<Tensors>>,
    home: Sender<Box<Tensors>>,
}

impl Pooled {
    /// Tensors outside any queue (a benchmark's bare inference loop, tests): dropping
    /// them just frees them.
    pub fn standalone(tensors: Tensors) -> Pooled {
        let (home, _) = crossbeam_channel::bounded(1);
        Pooled {
            tensors: Some(Box::new(tensors)),
            home,
        }
    }
}

impl Deref for Pooled {
    type Target = Tensors;
    fn deref(&self) -> &Tensors {
        self.tensors.as_ref().expect("pooled tensors present until drop")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Tensors {
        self.tensors.as_mut().expect("pooled tensors present until drop")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(t) = self.tensors.take() {
            let _ = self.home.try_send(t);
        }
    }
}

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

/// Runs inference on a batch of frames of the same padded size.
pub trait Backend: Send + 'static {
    /// Reads `image` and `sigma` of each frame, writes the results (`image` with
    /// `denoised` set, `labels` with `has_labels` set, or `logits` and `logits_shape`).
    fn run(&mut self, batch: &mut [Pooled]) -> Result<()>;
}

/// Builds the backend on the inference thread (so that slow builds such as a TensorRT
/// engine never block the caller).
pub type BackendFactory = Box<dyn FnOnce() -> Result<Box<dyn Backend>> + Send>;

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
    /// Whether the model takes a sigma input (estimation is skipped otherwise).
    pub needs_sigma: bool,
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
    /// f32 bits: noise sigma on the [0,1] scale, negative = estimate per frame.
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
    /// Last noise sigma fed to the model, 8-bit units.
    pub sigma: f32,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let processed = self.processed.load(Ordering::Relaxed);
        let sum = self.latency_sum_us.load(Ordering::Relaxed);
        StatsSnapshot {
            processed,
            dropped: self.dropped.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
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
    Frame { out: O, _permit: Permit, t0: Instant },
    Event(E),
    Dropped,
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
    fatal: Option<String>,
}

struct Shared<P: Processor, E> {
    config: QueueConfig,
    tunables: Arc<Tunables>,
    stats: Arc<Stats>,
    processor: Arc<P>,
    capacity: Arc<Capacity>,
    flushing: AtomicBool,
    closed: AtomicBool,
    epoch: AtomicU64,
    next_seq: AtomicU64,
    pool_tx: Sender<Box<Tensors>>,
    pool_rx: Receiver<Box<Tensors>>,
    done_tx: Sender<Done<P::Output, E>>,
}

impl<P: Processor, E> Shared<P, E> {
    fn stale(&self, epoch: u64) -> bool {
        epoch != self.epoch.load(Ordering::Acquire) || self.closed.load(Ordering::Acquire)
    }

    fn tensors(&self) -> Pooled {
        let t = self.pool_rx.try_recv().unwrap_or_default();
        Pooled {
            tensors: Some(t),
            home: self.pool_tx.clone(),
        }
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
    /// Starts the worker threads. `factory` builds the backend on the inference thread.
    pub fn new(
        config: QueueConfig,
        tunables: Arc<Tunables>,
        processor: Arc<P>,
        factory: BackendFactory,
    ) -> Result<Self> {
        config.validate()?;
        let (pool_tx, pool_rx) = crossbeam_channel::bounded(config.max_in_flight + 1);
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
            flushing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            pool_tx,
            pool_rx,
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
                lock(&self.reorder).after_drop = true;
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
                if let Some(msg) = r.fatal.take() {
                    return Recv::Item(Output::Error(Error::Ort(msg)));
                }
                while let Some(Some(_)) = r.slots.front() {
                    let kind = r.slots.pop_front().flatten().expect("front checked");
                    r.base += 1;
                    match kind {
                        DoneKind::Dropped => {
                            r.after_drop = true;
                        }
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
                Done::Fatal(e) => r.fatal = Some(e.to_string()),
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

    /// Stops the threads. Frames in flight are discarded. Never blocks on a backend
    /// that is still being built (that thread ends on its own when the build returns).
    pub fn shutdown(&self) {
        let sh = &self.shared;
        {
            let _st = lock(&sh.capacity.state);
            sh.closed.store(true, Ordering::Release);
            sh.epoch.fetch_add(1, Ordering::AcqRel);
        }
        sh.capacity.cv.notify_all();
        let _ = sh.done_tx.send(Done::Wake);
        lock(&self.pre_tx).take();
        while self.pre_rx.try_recv().is_ok() {}
        while self.infer_rx.try_recv().is_ok() {}
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
        let inference = lock(&self.inference).take();
        if let Some(t) = inference {
            if t.is_finished() {
                let _ = t.join();
            }
            // else: detached; it is building or running one batch and exits after it.
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
    let mut estimator = SigmaEstimator::new();
    while let Ok(mut w) = rx.recv() {
        if sh.stale(w.epoch) {
            continue;
        }
        let mut t = sh.tensors();
        let seq = w.seq;
        let result = catch_unwind(AssertUnwindSafe(|| -> Result<()> {
            sh.processor.pre(&mut w.frame, &mut t)?;
            if sh.config.needs_sigma && sh.tunables.noise_level() < 0.0 {
                t.sigma_estimate = estimator.estimate(&t.image, t.width, t.height, t.pw);
            }
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

impl Tensors {
    /// Sizes the tensors for a frame of `width` x `height` padded to `size_multiple`.
    /// Called by `Processor::pre` before it writes the image.
    pub fn set_size(&mut self, width: usize, height: usize, size_multiple: usize) {
        let m = size_multiple.max(1);
        self.prepare(width, height, round_up(width, m), round_up(height, m));
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
            // Keep draining so that permits are released and nothing blocks.
            while rx.recv().is_ok() {}
            return;
        }
    };
    let mut smoother = SigmaSmoother::new(0.2);
    let mut smoother_epoch = sh.epoch.load(Ordering::Acquire);
    let mut tensors: Vec<Pooled> = Vec::with_capacity(sh.config.batch_size);
    let mut metas: Vec<(u64, u64, P::Frame, Permit, Instant)> = Vec::with_capacity(sh.config.batch_size);
    let mut pending: Option<Staged<P::Frame>> = None;
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

        // Noise level: fixed by the property, or the smoothed per-frame estimate.
        let epoch = sh.epoch.load(Ordering::Acquire);
        if epoch != smoother_epoch {
            smoother.reset();
            smoother_epoch = epoch;
        }
        let fixed = sh.tunables.noise_level();
        for t in tensors.iter_mut() {
            t.sigma = if fixed >= 0.0 {
                fixed
            } else if t.sigma_estimate >= 0.0 {
                smoother.update(t.sigma_estimate)
            } else {
                0.0
            };
        }
        if let Some(t) = tensors.last() {
            sh.stats.last_sigma.store(t.sigma.to_bits(), Ordering::Relaxed);
        }

        let result = catch_unwind(AssertUnwindSafe(|| backend.run(&mut tensors)))
            .unwrap_or_else(|p| Err(Error::Panic(panic_message(p))));
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
                let msg = e.to_string();
                tensors.clear();
                for (seq, ..) in metas.drain(..) {
                    sh.done(seq, DoneKind::Error(Error::Ort(msg.clone())));
                }
            }
        }
    }
}

/// Receives from `rx` until the queue closes (checked every 50 ms, so that a worker
/// whose producer is still busy, such as an inference thread building its backend,
/// never holds up `shutdown`).
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
            if t.logits_shape[0] > 0 && !t.has_labels {
                let [c, lh, lw] = t.logits_shape;
                convert::logits_to_labels(&t.logits, c, lh, lw, t.ph, t.pw, t.width, t.height, &mut t.labels);
                t.has_labels = true;
            }
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
