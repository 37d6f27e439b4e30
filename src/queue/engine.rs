//! The inference engine: ONE thread that builds the backend, gathers the frames waiting
//! for inference in one or more streams' queues into batches and runs the backend.
//!
//! A [`FrameQueue`](super::FrameQueue) made with `FrameQueue::new` gets a private
//! engine; one made with `FrameQueue::with_engine` joins an engine that several queues
//! (streams, cameras) may share: [`Engine::shared`] hands out the engine registered
//! in the process under an id, or starts it. Each queue keeps its own pre- and
//! post-processing workers, reordering, flush, leaky drops and statistics: the engine
//! only takes frames from each stream's inference channel (a [`Port`]), batches frames
//! of the same padded size from all streams (up to `batch_size`, waiting at most the
//! smallest `batch-timeout` of the streams), runs the backend once, and hands every
//! frame back to its own stream's post-processing. Each stream runs its own batch stage
//! (the sigma fed to the model) on its own frames, restarted after its own flushes.
//!
//! The engine stops when the last stream leaves: its thread ends, dropping the backend,
//! and is joined.
use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use super::{lock, panic_message, BatchStage, Done, DoneKind, Permit, Processor, Shared, Staged};
use crate::backend::BackendFactory;
use crate::tensors::Pooled;
use crate::{Error, Result};

/// The engine's counters, shared by every stream's [`Stats`](super::Stats).
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Model runs, and frames in them (from all streams).
    pub(super) runs: AtomicU64,
    pub(super) frames: AtomicU64,
    /// Time inside `Backend::run`, and time between runs (the device idling for want
    /// of input) after the first.
    pub(super) inference_us: AtomicU64,
    pub(super) starved_us: AtomicU64,
    /// Streams (queues) on the engine now.
    pub(super) streams: AtomicUsize,
    /// `Backend::name` once the backend is built.
    pub(super) backend: Mutex<String>,
}

/// What the engine thread sees of one stream: the end of its queue's inference channel,
/// its batch stage, and the way back to its post-processing workers.
pub(super) trait Port: Send {
    fn stream(&self) -> u64;
    /// The stream was shut down: nothing of it is taken any more.
    fn closed(&self) -> bool;
    /// A frame of another padded size is kept for the next batch.
    fn has_pending(&self) -> bool;
    /// Adds the inference channel to `sel`.
    fn watch<'a>(&'a self, sel: &mut Select<'a>) -> usize;
    /// Takes the next live frame (the kept one first) for a batch of padded size
    /// `shape` (any for `None`), running the stream's batch stage on it.
    fn take(&mut self, shape: Option<(usize, usize)>) -> Take;
    /// The stream's longest wait for a batch to fill.
    fn batch_timeout(&self) -> Duration;
    /// Hands the oldest frame taken back to post-processing with its results.
    fn finish(&mut self, t: Pooled);
    /// Fails the oldest frame taken.
    fn fail(&mut self, e: &Error);
    /// Counts a model run with frames of this stream.
    fn count_run(&mut self);
    /// Forgets the oldest frame taken (its stream closed before it ran).
    fn discard(&mut self);
    /// The backend could not be built: reported once, at no position.
    fn fatal(&mut self, e: &Error);
    /// After `fatal`: frees the position of every frame waiting (nothing blocks).
    fn drain_failed(&mut self);
}

pub(super) enum Take {
    Empty,
    Taken(Pooled),
    /// The next frame has another padded size: kept for the next batch.
    Other,
}

type Meta<F> = (u64, u64, F, Permit, Instant);

/// A queue's [`Port`].
pub(super) struct QueuePort<P: Processor, E> {
    pub(super) id: u64,
    pub(super) sh: Arc<Shared<P, E>>,
    pub(super) rx: Receiver<Staged<P::Frame>>,
    pub(super) tx: Sender<Staged<P::Frame>>,
    pub(super) stage: Box<dyn BatchStage>,
    pub(super) stage_epoch: u64,
    pub(super) pending: Option<Staged<P::Frame>>,
    pub(super) taken: VecDeque<Meta<P::Frame>>,
}

impl<P: Processor, E: Send + 'static> Port for QueuePort<P, E> {
    fn stream(&self) -> u64 {
        self.id
    }

    fn closed(&self) -> bool {
        self.sh.closed.load(Ordering::Acquire)
    }

    fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn watch<'a>(&'a self, sel: &mut Select<'a>) -> usize {
        sel.recv(&self.rx)
    }

    fn take(&mut self, shape: Option<(usize, usize)>) -> Take {
        loop {
            let s = match self.pending.take() {
                Some(s) => s,
                None => match self.rx.try_recv() {
                    Ok(s) => s,
                    Err(_) => return Take::Empty,
                },
            };
            if self.sh.stale(s.epoch) {
                continue;
            }
            if shape.is_some_and(|sh| sh != (s.tensors.pw, s.tensors.ph)) {
                self.pending = Some(s);
                return Take::Other;
            }
            // The batch stage (the sigma fed to the model) restarts after a flush.
            let epoch = self.sh.epoch.load(Ordering::Acquire);
            if epoch != self.stage_epoch {
                self.stage.reset();
                self.stage_epoch = epoch;
            }
            let Staged {
                seq,
                epoch,
                frame,
                permit,
                t0,
                mut tensors,
            } = s;
            let (stage, tunables) = (&mut self.stage, &self.sh.tunables);
            let ran = catch_unwind(AssertUnwindSafe(|| {
                stage.run(std::slice::from_mut(&mut tensors), tunables)
            }));
            if let Err(p) = ran {
                // Reported at the frame's position; the engine goes on.
                self.sh.done(seq, DoneKind::Error(Error::Panic(panic_message(p))));
                continue;
            }
            self.sh
                .stats
                .last_sigma
                .store(tensors.sigma.to_bits(), Ordering::Relaxed);
            self.taken.push_back((seq, epoch, frame, permit, t0));
            return Take::Taken(tensors);
        }
    }

    fn batch_timeout(&self) -> Duration {
        self.sh.tunables.batch_timeout()
    }

    fn finish(&mut self, tensors: Pooled) {
        if let Some((seq, epoch, frame, permit, t0)) = self.taken.pop_front() {
            let _ = self.tx.send(Staged {
                seq,
                epoch,
                frame,
                permit,
                t0,
                tensors,
            });
        }
    }

    fn fail(&mut self, e: &Error) {
        if let Some((seq, ..)) = self.taken.pop_front() {
            self.sh.done(seq, DoneKind::Error(e.duplicate()));
        }
    }

    fn count_run(&mut self) {
        self.sh.stats.batches.fetch_add(1, Ordering::Relaxed);
    }

    fn discard(&mut self) {
        self.taken.pop_front();
    }

    fn fatal(&mut self, e: &Error) {
        let _ = self.sh.done_tx.send(Done::Fatal(e.duplicate()));
    }

    fn drain_failed(&mut self) {
        for s in self.pending.take().into_iter().chain(self.rx.try_iter()) {
            self.sh.done(s.seq, DoneKind::Failed);
        }
    }
}

enum Ctl {
    Join(Box<dyn Port>),
    Leave(u64, Sender<()>),
}

/// An inference engine: one backend, one thread, one or more streams.
pub struct Engine {
    /// Empty for a private engine.
    id: String,
    /// What streams sharing the engine must agree on, as (name, value).
    settings: Vec<(String, String)>,
    batch_size: usize,
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
    /// the backend `factory` builds on the engine's thread.
    pub fn private(batch_size: usize, factory: BackendFactory) -> Result<Arc<Engine>> {
        Self::start(String::new(), Vec::new(), batch_size, factory)
    }

    /// The engine registered under `id` in this process, or, if none runs, a new one
    /// (registered) with the backend `factory()` builds. An engine already running under
    /// `id` must have the same `settings` (names and values, in order: model, provider,
    /// device...) and `batch_size`, or this fails with an error naming the id and the
    /// first setting that differs.
    pub fn shared(
        id: &str,
        settings: Vec<(String, String)>,
        batch_size: usize,
        factory: impl FnOnce() -> BackendFactory,
    ) -> Result<Arc<Engine>> {
        if id.is_empty() {
            return Err(Error::Invalid("a shared engine needs a non-empty id".into()));
        }
        let mut reg = lock(&REGISTRY);
        let existing = reg.get(id).and_then(Weak::upgrade);
        let result = match &existing {
            Some(engine) => engine.check(&settings, batch_size).map(|()| engine.clone()),
            None => Self::start(id.to_string(), settings, batch_size, factory()).inspect(|e| {
                reg.insert(id.to_string(), Arc::downgrade(e));
            }),
        };
        drop(reg);
        // Dropped after the registry's lock: the last reference going runs `Drop`,
        // which takes the lock.
        drop(existing);
        result
    }

    fn check(&self, settings: &[(String, String)], batch_size: usize) -> Result<()> {
        let differs = |name: &str, mine: &str, theirs: &str| {
            Error::Invalid(format!(
                "shared engine '{}': {name} '{mine}' differs from '{theirs}' of the engine already \
                 running under this id (instances sharing an engine need the same model, \
                 execution-provider, device-id, fp16 and batch-size)",
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
        factory: BackendFactory,
    ) -> Result<Arc<Engine>> {
        if !(1..=64).contains(&batch_size) {
            return Err(Error::Invalid(format!("batch-size {batch_size} is outside 1..=64")));
        }
        let counters = Arc::new(EngineCounters::default());
        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("dseg-infer".into())
            .spawn(move || engine_thread(ctl_rx, batch_size, c, factory))
            .map_err(|e| Error::Invalid(format!("cannot start the inference thread: {e}")))?;
        Ok(Arc::new(Engine {
            id,
            settings,
            batch_size,
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
    /// (a batch already in the backend, or a backend being built, finishes first).
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
        // Closing the control channel ends the thread once its build or batch returns.
        lock(&self.ctl).take();
        if let Some(t) = lock(&self.thread).take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// Handles the control messages waiting; false when the engine is dropped.
fn control(ctl: &Receiver<Ctl>, ports: &mut Vec<Box<dyn Port>>, fatal: &Option<Error>) -> bool {
    loop {
        match ctl.try_recv() {
            Ok(Ctl::Join(mut port)) => {
                if let Some(e) = fatal {
                    port.fatal(e);
                }
                ports.push(port);
            }
            Ok(Ctl::Leave(stream, ack)) => {
                ports.retain(|p| p.stream() != stream);
                let _ = ack.send(());
            }
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
}

/// Waits until a control message or a frame of a stream that is neither closed nor
/// keeping a frame may be there, or until `deadline`. Returns false on timeout.
fn wait(ctl: &Receiver<Ctl>, ports: &[Box<dyn Port>], deadline: Option<Instant>) -> bool {
    let mut sel = Select::new();
    sel.recv(ctl);
    for p in ports.iter().filter(|p| !p.closed() && !p.has_pending()) {
        p.watch(&mut sel);
    }
    match deadline {
        Some(d) => sel.ready_deadline(d).is_ok(),
        None => {
            sel.ready();
            true
        }
    }
}

fn engine_thread(ctl: Receiver<Ctl>, batch_size: usize, counters: Arc<EngineCounters>, factory: BackendFactory) {
    let built = catch_unwind(AssertUnwindSafe(factory)).unwrap_or_else(|p| Err(Error::Panic(panic_message(p))));
    let mut ports: Vec<Box<dyn Port>> = Vec::new();
    let (mut backend, fatal) = match built {
        Ok(b) => {
            *lock(&counters.backend) = b.name();
            (Some(b), None)
        }
        Err(e) => (None, Some(e)),
    };
    if !control(&ctl, &mut ports, &None) {
        return;
    }
    if let Some(e) = &fatal {
        for p in ports.iter_mut() {
            p.fatal(e);
        }
    }
    let mut batch: Vec<Pooled> = Vec::with_capacity(batch_size);
    let mut owners: Vec<usize> = Vec::with_capacity(batch_size);
    let mut in_run: Vec<bool> = Vec::new();
    // Where the next round of takes starts, so that no stream is always first.
    let mut rr = 0usize;
    let mut last_run_end: Option<Instant> = None;
    loop {
        if !control(&ctl, &mut ports, &fatal) {
            return;
        }
        let Some(backend) = backend.as_mut() else {
            // Keep draining: each frame's permit is released and its position freed
            // (the error was reported once), so events queued behind frames, EOS or
            // a drain, still come out and nothing blocks.
            for p in ports.iter_mut() {
                p.drain_failed();
            }
            wait(&ctl, &ports, None);
            continue;
        };

        // Fill a batch: one frame per stream per round, from all streams.
        let n = ports.len();
        let mut shape: Option<(usize, usize)> = None;
        let mut deadline: Option<Instant> = None;
        while batch.len() < batch_size {
            let mut progress = false;
            for k in 0..n {
                if batch.len() == batch_size {
                    break;
                }
                let i = (rr + k) % n;
                if ports[i].closed() {
                    continue;
                }
                if let Take::Taken(t) = ports[i].take(shape) {
                    shape.get_or_insert((t.pw, t.ph));
                    batch.push(t);
                    owners.push(i);
                    progress = true;
                }
            }
            if progress {
                if deadline.is_none() {
                    let timeout = ports
                        .iter()
                        .filter(|p| !p.closed())
                        .map(|p| p.batch_timeout())
                        .min()
                        .unwrap_or_default();
                    deadline = Some(Instant::now() + timeout);
                }
                continue;
            }
            if batch.is_empty() {
                break;
            }
            // Wait for more until the deadline; a control message ends the wait (and
            // the filling: the batch runs as it is).
            if !wait(&ctl, &ports, deadline) || !ctl.is_empty() {
                break;
            }
        }
        rr = rr.wrapping_add(1);
        // Frames of a stream shut down while the batch filled are not run.
        let mut i = 0;
        while i < batch.len() {
            if ports[owners[i]].closed() {
                ports[owners[i]].discard();
                batch.remove(i);
                owners.remove(i);
            } else {
                i += 1;
            }
        }
        if batch.is_empty() {
            wait(&ctl, &ports, None);
            continue;
        }

        let started = Instant::now();
        if let Some(end) = last_run_end {
            let gap = started.duration_since(end).as_micros() as u64;
            counters.starved_us.fetch_add(gap, Ordering::Relaxed);
        }
        let result = catch_unwind(AssertUnwindSafe(|| backend.run(&mut batch)))
            .unwrap_or_else(|p| Err(Error::Panic(panic_message(p))));
        let end = Instant::now();
        last_run_end = Some(end);
        counters
            .inference_us
            .fetch_add(end.duration_since(started).as_micros() as u64, Ordering::Relaxed);
        counters.runs.fetch_add(1, Ordering::Relaxed);
        counters.frames.fetch_add(batch.len() as u64, Ordering::Relaxed);
        in_run.clear();
        in_run.resize(n, false);
        for &o in &owners {
            if !in_run[o] {
                in_run[o] = true;
                ports[o].count_run();
            }
        }
        match result {
            Ok(()) => {
                for (t, o) in batch.drain(..).zip(owners.drain(..)) {
                    ports[o].finish(t);
                }
            }
            Err(e) => {
                batch.clear();
                for o in owners.drain(..) {
                    ports[o].fail(&e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Engine tests of several queues sharing one engine, with a fake processor and
    //! fake backends (no GStreamer, no ONNX Runtime). Frames carry ids `1000 * stream
    //! + n`, which the fake backend logs, so that each batch's streams are known.
    use super::*;
    use crate::backend::Backend;
    use crate::queue::fakes::*;
    use crate::queue::support::{self, config, factory_of, spawn_receiver, tunables};
    use crate::queue::{FrameQueue, NoStages, QueueConfig, Submitted, Tunables};
    use std::collections::HashSet;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    fn settings(model: &str) -> Vec<(String, String)> {
        vec![
            ("model".to_string(), model.to_string()),
            ("provider".to_string(), "cpu".to_string()),
        ]
    }

    fn join(engine: &Arc<Engine>, cfg: QueueConfig, tun: Arc<Tunables>) -> Guard {
        support::Guard(Arc::new(
            FrameQueue::with_engine(cfg, tun, Arc::new(proc_(8)), Arc::new(NoStages), engine.clone())
                .expect("queue starts"),
        ))
    }

    /// Sets its flag when dropped: tells whether the backend outlived the engine.
    struct Flagged(FakeBackend, Arc<AtomicBool>);

    impl Backend for Flagged {
        fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
            self.0.run(batch)
        }
    }

    impl Drop for Flagged {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn four_streams_share_one_engine_with_mixed_batches_and_exact_per_stream_order() {
        let log = Log::default();
        let backend = FakeBackend {
            log: log.clone(),
            sleep: Duration::from_millis(3),
            ..FakeBackend::default()
        };
        let engine = Engine::shared("engine-test-four", settings("m"), 4, || factory_of(backend)).unwrap();
        let streams = 4u64;
        let n = 40u64;
        let queues: Vec<Guard> = (0..streams)
            .map(|_| {
                join(
                    &engine,
                    config(4, 8, 1),
                    tunables(false, 0.0, Duration::from_millis(20)),
                )
            })
            .collect();
        assert_eq!(engine.streams(), 4);
        let receivers: Vec<_> = queues.iter().map(|q| spawn_receiver(q.arc())).collect();
        let feeders: Vec<_> = queues
            .iter()
            .enumerate()
            .map(|(s, q)| {
                let q = q.arc();
                spawn_call(move || {
                    for i in 0..n {
                        assert_eq!(q.submit(frame(1000 * (s as u64 + 1) + i)), Ok(Submitted::Queued));
                    }
                })
            })
            .collect();
        for (s, rx) in receivers.iter().enumerate() {
            for i in 0..n {
                let (out, after_drop) = next_frame(rx);
                assert_eq!(out.id, 1000 * (s as u64 + 1) + i, "stream {s} out of order");
                assert!(!after_drop);
                assert_eq!(out.value, out.id as f32, "stream {s}: another stream's results");
            }
        }
        for f in feeders {
            f.recv_timeout(WAIT).expect("feeder done");
        }
        let batches = batch_ids(&log);
        let all: Vec<u64> = batches.concat();
        assert_eq!(all.len() as u64, streams * n, "every frame ran exactly once");
        assert_eq!(all.iter().collect::<HashSet<_>>().len() as u64, streams * n);
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 4), "{batches:?}");
        let mixed = batches
            .iter()
            .filter(|b| b.iter().map(|id| id / 1000).collect::<HashSet<_>>().len() > 1)
            .count();
        assert!(mixed > 0, "no batch held frames of several streams: {batches:?}");
        for q in &queues {
            let st = q.stats().snapshot();
            assert_eq!(st.processed, n);
            assert_eq!(st.dropped, 0);
            assert_eq!(st.engine_streams, 4);
            assert_eq!(st.mean_batch_frames, all.len() as f64 / batches.len() as f64);
            assert!(st.mean_batch_frames > 1.0, "{st:?}");
            assert!(st.batches <= batches.len() as u64);
        }
    }

    #[test]
    fn a_flush_on_one_stream_discards_only_its_frames() {
        let log = Log::default();
        let (backend, gate_tx, started) = gated(log.clone());
        let engine = Engine::shared("engine-test-flush", settings("m"), 2, || factory_of(backend)).unwrap();
        let a = join(&engine, config(2, 8, 1), tunables(false, 0.0, Duration::ZERO));
        let b = join(&engine, config(2, 8, 1), tunables(false, 0.0, Duration::ZERO));
        let (rx_a, rx_b) = (spawn_receiver(a.arc()), spawn_receiver(b.arc()));
        // A frame of A in the (blocked) backend, more of A and of B waiting for it.
        assert_eq!(a.submit(frame(1000)), Ok(Submitted::Queued));
        assert_eq!(started.recv_timeout(WAIT), Ok(vec![1000]));
        for i in 1..4 {
            assert_eq!(a.submit(frame(1000 + i)), Ok(Submitted::Queued));
            assert_eq!(b.submit(frame(2000 + i)), Ok(Submitted::Queued));
        }
        b.submit_event(7).unwrap();
        a.flush_start();
        a.flush_stop();
        drop(gate_tx);
        for i in 1..4 {
            assert_eq!(
                next_item(&rx_b),
                Item::Frame {
                    id: 2000 + i,
                    after_drop: false
                }
            );
        }
        assert_eq!(next_item(&rx_b), Item::Event(7));
        for i in 10..13 {
            assert_eq!(a.submit(frame(1000 + i)), Ok(Submitted::Queued));
        }
        for i in 10..13 {
            assert_eq!(
                next_item(&rx_a),
                Item::Frame {
                    id: 1000 + i,
                    after_drop: false
                },
                "only A's frames submitted after its flush come out"
            );
        }
        let ran: HashSet<u64> = batch_ids(&log).concat().into_iter().collect();
        for i in 1..4 {
            assert!(!ran.contains(&(1000 + i)), "A's frame {} ran after A's flush", 1000 + i);
            assert!(ran.contains(&(2000 + i)));
        }
        assert_eq!(b.stats().snapshot().processed, 3);
        assert_eq!(a.stats().snapshot().processed, 3);
        wait_until("A's stale frames release their permits", || a.in_flight() == 0);
    }

    #[test]
    fn the_engine_stops_when_its_last_stream_leaves_and_a_new_one_starts_after() {
        let dropped = Arc::new(AtomicBool::new(false));
        let built = Arc::new(AtomicU64::new(0));
        let make = |dropped: Arc<AtomicBool>, built: Arc<AtomicU64>| {
            move || -> BackendFactory {
                built.fetch_add(1, Ordering::SeqCst);
                factory_of(Flagged(FakeBackend::default(), dropped))
            }
        };
        let id = "engine-test-last";
        let engine = Engine::shared(id, settings("m"), 1, make(dropped.clone(), built.clone())).unwrap();
        let a = join(&engine, config(1, 4, 1), tunables(false, 0.0, Duration::ZERO));
        let b = join(&engine, config(1, 4, 1), tunables(false, 0.0, Duration::ZERO));
        let again = Engine::shared(id, settings("m"), 1, make(dropped.clone(), built.clone())).unwrap();
        assert!(Arc::ptr_eq(&engine, &again), "the same id gives the same engine");
        drop((engine, again));
        let rx_b = spawn_receiver(b.arc());
        a.shutdown();
        assert_eq!(b.stats().snapshot().engine_streams, 1);
        assert_eq!(b.submit(frame(5)), Ok(Submitted::Queued));
        assert_eq!(next_frame(&rx_b).0.id, 5, "the engine runs on for the stream left");
        assert!(
            !dropped.load(Ordering::SeqCst),
            "the backend went with a stream still on it"
        );
        b.shutdown();
        assert!(
            dropped.load(Ordering::SeqCst),
            "the backend outlived the last stream's shutdown"
        );
        assert_eq!(built.load(Ordering::SeqCst), 1);
        let fresh = Engine::shared(id, settings("m"), 1, make(dropped.clone(), built.clone())).unwrap();
        assert_eq!(
            built.load(Ordering::SeqCst),
            2,
            "a new engine after the last one stopped"
        );
        assert_eq!(fresh.streams(), 0);
    }

    #[test]
    fn mismatched_settings_under_one_id_are_an_error_naming_the_id() {
        let engine = Engine::shared("engine-test-mismatch", settings("a.onnx"), 2, || {
            factory_of(FakeBackend::default())
        })
        .unwrap();
        let err = Engine::shared("engine-test-mismatch", settings("b.onnx"), 2, || {
            panic!("no second backend is built")
        })
        .err()
        .expect("a different model is refused")
        .to_string();
        assert!(err.contains("engine-test-mismatch"), "{err}");
        assert!(
            err.contains("model") && err.contains("b.onnx") && err.contains("a.onnx"),
            "{err}"
        );
        let err = Engine::shared("engine-test-mismatch", settings("a.onnx"), 4, || {
            panic!("no second backend is built")
        })
        .err()
        .expect("a different batch size is refused")
        .to_string();
        assert!(err.contains("batch-size"), "{err}");
        // A queue of another batch size cannot join either.
        let q = FrameQueue::<TestProc, u64>::with_engine(
            config(4, 8, 1),
            tunables(false, 0.0, Duration::ZERO),
            Arc::new(proc_(8)),
            Arc::new(NoStages),
            engine.clone(),
        );
        assert!(q.is_err());
        assert_eq!(engine.streams(), 0);
    }

    #[test]
    fn a_failed_build_is_reported_to_every_stream() {
        let factory = || -> BackendFactory { Box::new(|| Err(Error::Ort("no such model".into()))) };
        let engine = Engine::shared("engine-test-fatal", settings("m"), 1, factory).unwrap();
        let a = join(&engine, config(1, 4, 1), tunables(false, 0.0, Duration::ZERO));
        let b = join(&engine, config(1, 4, 1), tunables(false, 0.0, Duration::ZERO));
        for q in [&a, &b] {
            let rx = spawn_receiver(q.arc());
            assert_eq!(q.submit(frame(1)), Ok(Submitted::Queued));
            assert!(next_error(&rx).to_string().contains("no such model"));
            q.submit_event(3).unwrap();
            assert_eq!(next_item(&rx), Item::Event(3), "events behind failed frames come out");
        }
    }

    /// Logs (frame id, sigma) of every frame the model runs.
    #[derive(Default)]
    struct SigmaBackend(Arc<Mutex<Vec<(u64, f32)>>>);

    impl Backend for SigmaBackend {
        fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
            lock(&self.0).extend(batch.iter().map(|t| (t.image[0] as u64, t.sigma)));
            Ok(())
        }
    }

    #[test]
    fn each_stream_feeds_the_model_its_own_sigma() {
        let backend = SigmaBackend::default();
        let log = backend.0.clone();
        let engine = Engine::shared("engine-test-sigma", settings("m"), 4, || factory_of(backend)).unwrap();
        let levels = [0.1f32, 0.3];
        let queues: Vec<Guard> = levels
            .iter()
            .map(|&level| {
                support::Guard(Arc::new(
                    FrameQueue::with_engine(
                        config(4, 8, 1),
                        tunables(false, level, Duration::from_millis(20)),
                        Arc::new(proc_(8)),
                        Arc::new(crate::processing::ModelStages::new(true)),
                        engine.clone(),
                    )
                    .unwrap(),
                ))
            })
            .collect();
        let receivers: Vec<_> = queues.iter().map(|q| spawn_receiver(q.arc())).collect();
        for i in 0..8 {
            for (s, q) in queues.iter().enumerate() {
                assert_eq!(q.submit(frame(1000 * (s as u64 + 1) + i)), Ok(Submitted::Queued));
            }
        }
        for (s, rx) in receivers.iter().enumerate() {
            for i in 0..8 {
                assert_eq!(next_frame(rx).0.id, 1000 * (s as u64 + 1) + i);
            }
        }
        let log = lock(&log).clone();
        assert_eq!(log.len(), 16);
        for (id, sigma) in log {
            assert_eq!(sigma, levels[(id / 1000 - 1) as usize], "frame {id}");
        }
    }

    #[test]
    fn streams_of_different_frame_sizes_share_the_engine_without_mixed_batches() {
        let log = Log::default();
        let backend = FakeBackend {
            log: log.clone(),
            sleep: Duration::from_millis(2),
            ..FakeBackend::default()
        };
        let engine = Engine::shared("engine-test-sizes", settings("m"), 4, || factory_of(backend)).unwrap();
        let sizes = [(8, 8), (16, 16), (8, 8)];
        let queues: Vec<Guard> = sizes
            .iter()
            .map(|_| {
                join(
                    &engine,
                    config(4, 8, 1),
                    tunables(false, 0.0, Duration::from_millis(10)),
                )
            })
            .collect();
        let receivers: Vec<_> = queues.iter().map(|q| spawn_receiver(q.arc())).collect();
        let n = 12u64;
        for i in 0..n {
            for (s, q) in queues.iter().enumerate() {
                let (w, h) = sizes[s];
                assert_eq!(q.submit(sized(1000 * (s as u64 + 1) + i, w, h)), Ok(Submitted::Queued));
            }
        }
        for (s, rx) in receivers.iter().enumerate() {
            for i in 0..n {
                let (out, _) = next_frame(rx);
                assert_eq!(out.id, 1000 * (s as u64 + 1) + i);
                assert_eq!(out.padded, sizes[s]);
            }
        }
        for b in lock(&log).iter() {
            let expected = if b.padded == (16, 16) { vec![2] } else { vec![1, 3] };
            for id in &b.ids {
                assert!(
                    expected.contains(&(id / 1000)),
                    "frame {id} in a batch of {:?}",
                    b.padded
                );
            }
        }
    }

    #[test]
    fn leaky_drops_stay_on_their_own_stream() {
        let (backend, gate_tx, started) = gated(Log::default());
        let engine = Engine::shared("engine-test-leaky", settings("m"), 1, || factory_of(backend)).unwrap();
        let a = join(&engine, config(1, 2, 1), tunables(true, 0.0, Duration::ZERO));
        let b = join(&engine, config(1, 4, 1), tunables(false, 0.0, Duration::ZERO));
        assert_eq!(a.submit(frame(1000)), Ok(Submitted::Queued));
        assert_eq!(
            started.recv_timeout(WAIT),
            Ok(vec![1000]),
            "A's first frame is in the backend"
        );
        for i in 0..3 {
            assert_eq!(b.submit(frame(2000 + i)), Ok(Submitted::Queued));
        }
        let n = 10u64;
        let a2 = a.arc();
        let results = spawn_call(move || (1..n).map(|i| a2.submit(frame(1000 + i))).collect::<Vec<_>>())
            .recv_timeout(WAIT)
            .expect("a leaky submit blocked");
        let dropped = results
            .iter()
            .filter(|r| matches!(r, Ok(Submitted::QueuedDroppedOldest(_)) | Ok(Submitted::DroppedNew(_))))
            .count() as u64;
        assert!(dropped > 0);
        drop(gate_tx);
        let (rx_a, rx_b) = (spawn_receiver(a.arc()), spawn_receiver(b.arc()));
        for i in 0..3 {
            assert_eq!(
                next_item(&rx_b),
                Item::Frame {
                    id: 2000 + i,
                    after_drop: false
                }
            );
        }
        let mut prev = None;
        for _ in 0..(n - dropped) {
            let (out, _) = next_frame(&rx_a);
            assert!(prev.is_none_or(|p| out.id > p), "A out of order");
            prev = Some(out.id);
        }
        assert_eq!(a.stats().snapshot().dropped, dropped);
        assert_eq!(b.stats().snapshot().dropped, 0, "B lost frames to A's drops");
        assert_eq!(b.stats().snapshot().processed, 3);
    }

    /// A batch stage that panics on the frame filled with `bad`.
    struct PanicStage(u64);

    impl BatchStage for PanicStage {
        fn reset(&mut self) {}
        fn run(&mut self, batch: &mut [Pooled], _tunables: &Tunables) {
            if batch.iter().any(|t| t.image[0] as u64 == self.0) {
                panic!("injected batch stage panic on frame {}", self.0);
            }
        }
    }

    struct PanicStages;

    impl crate::queue::Stages for PanicStages {
        fn pre_stage(&self) -> Box<dyn crate::queue::PreStage> {
            Box::new(NoStages)
        }
        fn batch_stage(&self) -> Box<dyn BatchStage> {
            Box::new(PanicStage(3))
        }
        fn post_stage(&self, _t: &mut crate::tensors::Tensors) {}
    }

    #[test]
    fn a_batch_stage_panic_fails_its_frame_and_the_engine_goes_on() {
        let q = support::Guard(Arc::new(
            FrameQueue::new(
                config(2, 8, 1),
                tunables(false, 0.0, Duration::from_millis(5)),
                Arc::new(proc_(8)),
                Arc::new(PanicStages),
                factory_of(FakeBackend::default()),
            )
            .unwrap(),
        ));
        let rx = spawn_receiver(q.arc());
        for i in 0..6 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 0..6 {
            match next_item(&rx) {
                Item::Error(msg) if i == 3 => assert!(msg.contains("injected batch stage panic"), "{msg}"),
                got => assert_eq!(
                    got,
                    Item::Frame {
                        id: i,
                        after_drop: false
                    }
                ),
            }
        }
    }
}
