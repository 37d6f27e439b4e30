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
//! - The pre-processing workers finish frames in any order; the sequencer hands them
//!   to the inference thread in submission order, so a batch is consecutive frames.
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
//!
//! - The inference thread is an [`Engine`]'s: private to the queue (`new`), or shared
//!   with other queues (`with_engine`, [`Engine::shared`]), whose frames then share
//!   its batches; everything else above stays per queue.
//!
//! The files: `stages` (the [`Processor`] and [`Stages`] traits), `config` (settings),
//! `stats` (counters), `engine` (the inference thread, private or shared), `workers`
//! (the pre- and post-processing threads), `sequencer` (pre-processed frames to the
//! inference thread in order), `reorder` (`recv`, in order), `tests` (the queue
//! proper's tests); this one holds the queue proper: submitting, flushing and shutting
//! down.
mod config;
mod engine;
mod reorder;
mod sequencer;
mod stages;
mod stats;
mod workers;

#[cfg(test)]
mod fakes;
#[cfg(test)]
pub(crate) mod support;

pub use config::{QueueConfig, Tunables};
pub use engine::{BackendInfo, Engine, EngineCounters, MAX_CONCURRENT_RUNS};
pub use stages::{BatchStage, NoStages, PreStage, Processor, Stages};
pub use stats::{Stats, StatsSnapshot};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::backend::BackendFactory;
use crate::tensors::{Pool, Pooled};
use crate::{Error, Result};
use engine::QueuePort;
use reorder::Reorder;
use sequencer::Sequencer;
use workers::{post_worker, pre_worker};

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
    /// The frame's number among the frames (for [`Sequencer`]).
    nth: u64,
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
    /// Hands pre-processed frames to the inference channel in submission order.
    order: Sequencer<P::Frame>,
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
    /// The engine running the model, and this queue's stream id on it.
    engine: Mutex<Option<Arc<Engine>>>,
    stream: u64,
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
    /// Starts the worker threads and a private engine. `stages` run around `processor`;
    /// `factory` builds the backend on the inference thread.
    pub fn new(
        config: QueueConfig,
        tunables: Arc<Tunables>,
        processor: Arc<P>,
        stages: Arc<dyn Stages>,
        factory: BackendFactory,
    ) -> Result<Self> {
        config.validate()?;
        let engine = Engine::private(config.batch_size, config.concurrent_runs, factory)?;
        Self::with_engine(config, tunables, processor, stages, engine)
    }

    /// Starts the worker threads and joins `engine` (which may be shared with other
    /// queues, see [`Engine::shared`]) as one more stream. `config.batch_size` must be
    /// the engine's.
    pub fn with_engine(
        config: QueueConfig,
        tunables: Arc<Tunables>,
        processor: Arc<P>,
        stages: Arc<dyn Stages>,
        engine: Arc<Engine>,
    ) -> Result<Self> {
        config.validate()?;
        if config.batch_size != engine.batch_size() {
            return Err(Error::Invalid(format!(
                "batch-size {} differs from the engine's {}",
                config.batch_size,
                engine.batch_size()
            )));
        }
        let pool = Pool::new(config.max_in_flight + 1);
        // Frames numbered and not yet handed over to inference: about the frames in
        // flight (the ring grows, once, if leaky drops behind a slow frame widen it).
        let order_slots = config.max_in_flight + config.workers;
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
            stats: Arc::new(Stats {
                engine: engine.counters(),
                ..Stats::default()
            }),
            processor,
            stages,
            flushing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            pool,
            order: Sequencer::new(infer_tx, order_slots),
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
            let (sh, rx) = (shared.clone(), pre_rx.clone());
            threads.push(spawn(format!("dseg-pre-{i}"), Box::new(move || pre_worker(sh, rx)))?);
            let (sh, rx) = (shared.clone(), post_rx.clone());
            threads.push(spawn(format!("dseg-post-{i}"), Box::new(move || post_worker(sh, rx)))?);
        }
        let stream = engine::next_stream_id();
        engine.attach(Box::new(QueuePort::new(
            stream,
            shared.clone(),
            infer_rx.clone(),
            post_tx,
        )));
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
            engine: Mutex::new(Some(engine)),
            stream,
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
            nth: sh.order.number(),
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

    /// Drops the oldest frame still waiting for inference (in the inference channel,
    /// then held for a frame before it, then waiting for pre-processing), releasing
    /// its share of the capacity, and gives the frame back.
    fn drop_oldest(&self) -> Option<P::Frame> {
        let (seq, frame) = match self.infer_rx.try_recv() {
            Ok(s) => (s.seq, s.frame),
            Err(_) => match self.shared.order.take_oldest() {
                Some(s) => (s.seq, s.frame),
                None => {
                    let w = self.pre_rx.try_recv().ok()?;
                    self.shared.order.skip(w.nth);
                    (w.seq, w.frame)
                }
            },
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
        sh.order.clear();
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
        sh.order.restart();
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
        // Closing the pre-processing channel ends the pre workers, and the sequencer
        // lets go of the inference channel; the post workers watch `closed`.
        lock(&self.pre_tx).take();
        while self.pre_rx.try_recv().is_ok() {}
        sh.order.close();
        while self.infer_rx.try_recv().is_ok() {}
        // Off the engine: a private engine (or a shared one losing its last stream)
        // stops, its thread joined, when its last reference goes here.
        let engine = lock(&self.engine).take();
        if let Some(engine) = engine {
            engine.detach(self.stream);
            drop(engine);
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
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

#[cfg(test)]
mod tests;
