//! The queue's test fixtures: a fake processor, fake backends, and helpers that start
//! a queue and read what comes out of it.
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::support;
use super::{lock, FrameQueue, NoStages, Output, Processor, QueueConfig, Recv, Submitted, Tunables};
use crate::backend::{Backend, BackendFactory};
use crate::tensors::{Pooled, Tensors};
use crate::{Error, Result};

/// The most any awaited step may take before the test fails.
pub(super) const WAIT: Duration = Duration::from_secs(5);
/// How long a call is watched to make sure it stays blocked.
pub(super) const QUIET: Duration = Duration::from_millis(300);
/// The longest a gated fake backend waits for its gate.
pub(super) const GATE_BACKSTOP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub(super) struct TestFrame {
    pub(super) id: u64,
    pub(super) width: usize,
    pub(super) height: usize,
}

pub(super) fn frame(id: u64) -> TestFrame {
    sized(id, 8, 8)
}

pub(super) fn sized(id: u64, width: usize, height: usize) -> TestFrame {
    TestFrame { id, width, height }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Out {
    pub(super) id: u64,
    /// `image[0]` after inference: `id + add` for frames filled with their id.
    pub(super) value: f32,
    pub(super) padded: (usize, usize),
    pub(super) denoised: bool,
}

#[derive(Default)]
pub(super) struct TestProc {
    pub(super) size_multiple: usize,
    /// Sleep a little, differently per frame, in pre and post so that workers finish out of order.
    pub(super) jitter: bool,
    pub(super) pre_panic_on: Option<u64>,
    pub(super) pre_error_on: Option<u64>,
    pub(super) post_panic_on: Option<u64>,
    /// Frames whose pre-processing finishes only after the next frame's has (each
    /// waits for it, at most `WAIT`): with two workers or more, the next frame
    /// deterministically overtakes it.
    pub(super) overtaken: Vec<u64>,
    /// A frame whose pre-processing waits for a message on the receiver (or for the
    /// sender to be dropped; at most `GATE_BACKSTOP`).
    pub(super) pre_gate: Option<(u64, Receiver<()>)>,
    /// The frames whose pre-processing finished, in the order they did.
    pub(super) pre_finished: PreFinished,
}

/// The frames whose pre-processing finished, in order, and a condition variable
/// notified at each.
pub(super) type PreFinished = Arc<(Mutex<Vec<u64>>, Condvar)>;

/// The frames whose pre-processing finished so far, in the order they did.
pub(super) fn pre_finished(f: &PreFinished) -> Vec<u64> {
    lock(&f.0).clone()
}

pub(super) fn jitter(id: u64, salt: u64) {
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
        if let Some((_, gate)) = self.pre_gate.as_ref().filter(|(id, _)| *id == f.id) {
            let _ = gate.recv_timeout(GATE_BACKSTOP);
        }
        let (finished, cv) = &*self.pre_finished;
        if self.overtaken.contains(&f.id) {
            let after = f.id + 1;
            let guard = lock(finished);
            let _ = cv.wait_timeout_while(guard, WAIT, |done| !done.contains(&after));
        }
        t.set_size(f.width, f.height, self.size_multiple);
        t.image.fill(f.id as f32);
        lock(finished).push(f.id);
        cv.notify_all();
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
pub(super) struct BatchLog {
    /// `image[0]` of each frame: its id for frames filled with their id.
    pub(super) ids: Vec<u64>,
    pub(super) padded: (usize, usize),
}

pub(super) type Log = Arc<Mutex<Vec<BatchLog>>>;

/// A configurable fake backend: adds `add` to every sample, optionally waiting on
/// `gate` (one message per batch, or the sender dropped to open it for good),
/// sleeping, failing or panicking on a chosen frame.
#[derive(Default, Clone)]
pub(super) struct FakeBackend {
    pub(super) add: f32,
    pub(super) sleep: Duration,
    pub(super) gate: Option<Receiver<()>>,
    pub(super) started: Option<Sender<Vec<u64>>>,
    pub(super) fail_on: Option<u64>,
    pub(super) panic_on: Option<u64>,
    pub(super) log: Log,
}

/// A backend that announces each batch's frame ids on the returned receiver and then
/// holds the batch until the test sends on the returned sender (one send per batch),
/// logging into `log`.
pub(super) fn gated(log: Log) -> (FakeBackend, Sender<()>, Receiver<Vec<u64>>) {
    let (gate_tx, gate) = crossbeam_channel::unbounded();
    let (started_tx, started) = crossbeam_channel::unbounded();
    let backend = FakeBackend {
        gate: Some(gate),
        started: Some(started_tx),
        log,
        ..FakeBackend::default()
    };
    (backend, gate_tx, started)
}

impl Backend for FakeBackend {
    fn replicate(&self) -> Result<Box<dyn Backend>> {
        Ok(Box::new(self.clone()))
    }

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

pub(super) type R = Recv<Out, u64>;

pub(super) type Guard = support::Guard<TestProc, u64>;

pub(super) fn proc_(size_multiple: usize) -> TestProc {
    TestProc {
        size_multiple,
        ..TestProc::default()
    }
}

pub(super) fn start(cfg: QueueConfig, tun: Arc<Tunables>, p: TestProc, factory: BackendFactory) -> Guard {
    support::Guard(Arc::new(
        FrameQueue::new(cfg, tun, Arc::new(p), Arc::new(NoStages), factory).expect("queue starts"),
    ))
}

/// Runs `f` on its own thread; its result arrives on the returned channel.
pub(super) fn spawn_call<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// What came out, in a comparable form.
#[derive(Debug, PartialEq)]
pub(super) enum Item {
    Frame { id: u64, after_drop: bool },
    Event(u64),
    Error(String),
}

pub(super) fn item(r: R) -> Item {
    match r {
        Recv::Item(Output::Frame { out, after_drop, .. }) => Item::Frame { id: out.id, after_drop },
        Recv::Item(Output::Event(e)) => Item::Event(e),
        Recv::Item(Output::Error(e)) => Item::Error(e.to_string()),
        other => panic!("expected an item, got {other:?}"),
    }
}

pub(super) fn next(rx: &Receiver<R>) -> R {
    rx.recv_timeout(WAIT).expect("recv gave nothing in time")
}

pub(super) fn next_item(rx: &Receiver<R>) -> Item {
    item(next(rx))
}

pub(super) fn next_frame(rx: &Receiver<R>) -> (Out, bool) {
    match next(rx) {
        Recv::Item(Output::Frame { out, after_drop, .. }) => (out, after_drop),
        other => panic!("expected a frame, got {other:?}"),
    }
}

pub(super) fn next_error(rx: &Receiver<R>) -> Error {
    match next(rx) {
        Recv::Item(Output::Error(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

pub(super) fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

pub(super) fn batch_ids(log: &Log) -> Vec<Vec<u64>> {
    lock(log).iter().map(|b| b.ids.clone()).collect()
}

/// Feeds `n` frames to each queue from a thread of its own, frame ids
/// `1000 * (stream + 1) + i`; each receiver answers when its feeder is done.
pub(super) fn feed_streams(queues: &[Guard], n: u64) -> Vec<Receiver<()>> {
    queues
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
        .collect()
}
