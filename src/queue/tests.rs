//! Tests of the queue proper with a fake processor and fake backends (no
//! GStreamer, no ONNX Runtime). Things that must happen are awaited for up to
//! `WAIT`; things that must not happen are watched for `QUIET`.
use crate::backend::Backend;
use crate::queue::fakes::*;
use crate::queue::support::{config, factory_of, spawn_receiver, tunables};
use crate::queue::*;
use crossbeam_channel::{RecvTimeoutError, TryRecvError};
use std::collections::HashSet;

// ---------------------------------------------------------------------
// Bounded memory
// ---------------------------------------------------------------------

#[test]
fn submit_blocks_once_max_in_flight_frames_are_in_flight_until_one_is_received() {
    let (backend, gate_tx, _started) = gated(Log::default());
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
    let (backend, gate_tx, started) = gated(Log::default());
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
    let (backend, gate_tx, started) = gated(Log::default());
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
    let (backend, gate_tx, started) = gated(Log::default());
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
    let log = Log::default();
    let (backend, gate_tx, started) = gated(log.clone());
    let dropped = Arc::new(AtomicBool::new(false));
    let backend = Flagged(backend, DropFlag(dropped.clone()));
    let q = start(
        // One pre-processing worker (from before the sequencer, when with two a
        // batch took frames in the order they finished pre-processing; the first
        // batch is frames 0 and 1 with any number of workers now).
        config(2, 6, 1),
        // A long batch timeout: the first batch is frames 0 and 1 however
        // late the worker hands frame 1 over (a loaded machine).
        tunables(false, 0.0, Duration::from_secs(10)),
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
    let (backend, gate_tx, _started) = gated(Log::default());
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
