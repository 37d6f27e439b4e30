//! The queue's threads: the pre-processing workers and the post-processing workers
//! (the inference thread, which gathers frames into batches and runs the backend, is
//! the engine's: `engine`).
//! Each catches its panics and reports them, like errors, at the frame's position.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{panic_message, DoneKind, Processor, Shared, Staged, Work};
use crate::{Error, Result};

/// Pre-processes frames and hands them to the sequencer, which passes them on to the
/// inference channel in submission order (a frame that fails is skipped there).
pub(super) fn pre_worker<P: Processor, E>(sh: Arc<Shared<P, E>>, rx: Receiver<Work<P::Frame>>) {
    let mut stage = sh.stages.pre_stage();
    while let Ok(mut w) = rx.recv() {
        if sh.stale(w.epoch) {
            continue;
        }
        let mut t = sh.tensors();
        let (seq, nth) = (w.seq, w.nth);
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
                if !sh.order.hand_over(nth, staged, |epoch| sh.stale(epoch)) {
                    return;
                }
            }
            Ok(Err(e)) => {
                sh.order.skip(nth);
                sh.done(seq, DoneKind::Error(e));
            }
            Err(p) => {
                sh.order.skip(nth);
                sh.done(seq, DoneKind::Error(Error::Panic(panic_message(p))));
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

pub(super) fn post_worker<P: Processor, E>(sh: Arc<Shared<P, E>>, rx: Receiver<Staged<P::Frame>>) {
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

#[cfg(test)]
mod tests {
    //! Engine tests of the queue with a fake processor and fake backends (no
    //! GStreamer, no ONNX Runtime). Things that must happen are awaited for up to
    //! `WAIT`; things that must not happen are watched for `QUIET`.
    use crate::queue::fakes::*;
    use crate::queue::support::{config, factory_of, spawn_receiver, tunables};
    use crate::queue::*;

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

    /// Every frame in the batches the backend ran, in the order it ran them.
    fn ran(log: &Log) -> Vec<u64> {
        batch_ids(log).concat()
    }

    /// Whether `a` finished pre-processing before `b`.
    fn finished_before(p: &PreFinished, a: u64, b: u64) -> bool {
        let order = pre_finished(p);
        let at = |id| order.iter().position(|&x| x == id);
        matches!((at(a), at(b)), (Some(i), Some(j)) if i < j)
    }

    #[test]
    fn a_batch_is_consecutive_frames_even_when_pre_processing_finishes_out_of_order() {
        let log = Log::default();
        let backend = FakeBackend {
            log: log.clone(),
            ..FakeBackend::default()
        };
        // Two workers; frames 2, 7 and 9 finish pre-processing only after the frame
        // after them. A long batch timeout: every batch fills to 4 (16 frames).
        let p = TestProc {
            size_multiple: 8,
            overtaken: vec![2, 7, 9],
            ..TestProc::default()
        };
        let finished = p.pre_finished.clone();
        let q = start(
            config(4, 16, 2),
            tunables(false, 0.0, Duration::from_secs(10)),
            p,
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        for i in 0..16 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 0..16 {
            assert_eq!(
                next_frame(&rx),
                (
                    Out {
                        id: i,
                        value: i as f32,
                        padded: (8, 8),
                        denoised: true
                    },
                    false
                )
            );
        }
        for k in [2, 7, 9] {
            assert!(
                finished_before(&finished, k + 1, k),
                "frame {} did not overtake frame {k}: {:?}",
                k + 1,
                pre_finished(&finished)
            );
        }
        assert_eq!(
            batch_ids(&log),
            vec![
                vec![0, 1, 2, 3],
                vec![4, 5, 6, 7],
                vec![8, 9, 10, 11],
                vec![12, 13, 14, 15]
            ],
            "a batch took a frame that overtook another in pre-processing"
        );
    }

    #[test]
    fn frames_failing_pre_processing_do_not_hold_back_the_batches_after_them() {
        let log = Log::default();
        let backend = FakeBackend {
            log: log.clone(),
            ..FakeBackend::default()
        };
        let p = TestProc {
            size_multiple: 8,
            pre_error_on: Some(2),
            pre_panic_on: Some(5),
            overtaken: vec![8],
            ..TestProc::default()
        };
        // 18 frames, 2 failing: 4 full batches, so no batch waits for the timeout.
        let q = start(
            config(4, 32, 2),
            tunables(false, 0.0, Duration::from_secs(10)),
            p,
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        for i in 0..18 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 0..18 {
            match next_item(&rx) {
                Item::Error(m) if i == 2 => assert!(m.contains("injected pre error on frame 2"), "{m}"),
                Item::Error(m) if i == 5 => assert!(m.contains("injected pre panic on frame 5"), "{m}"),
                got => assert_eq!(
                    got,
                    Item::Frame {
                        id: i,
                        after_drop: false
                    }
                ),
            }
        }
        assert_eq!(
            batch_ids(&log),
            vec![
                vec![0, 1, 3, 4],
                vec![6, 7, 8, 9],
                vec![10, 11, 12, 13],
                vec![14, 15, 16, 17]
            ]
        );
        wait_until("permits are released", || q.in_flight() == 0);
    }

    /// A queue whose frame 0 stays in pre-processing until the returned sender is
    /// dropped; its backend's log and the frames that finished pre-processing.
    fn gated_queue(cfg: QueueConfig, tun: Arc<Tunables>) -> (Guard, Log, crossbeam_channel::Sender<()>, PreFinished) {
        let log = Log::default();
        let backend = FakeBackend {
            log: log.clone(),
            ..FakeBackend::default()
        };
        let (gate_tx, gate) = crossbeam_channel::unbounded();
        let p = TestProc {
            size_multiple: 8,
            pre_gate: Some((0, gate)),
            ..TestProc::default()
        };
        let finished = p.pre_finished.clone();
        (start(cfg, tun, p, factory_of(backend)), log, gate_tx, finished)
    }

    #[test]
    fn leaky_drops_while_an_earlier_frame_is_pre_processed_neither_stall_nor_reorder_batches() {
        let (q, log, gate_tx, finished) = gated_queue(config(2, 4, 2), tunables(true, 0.0, Duration::ZERO));
        let rx = spawn_receiver(q.arc());
        // Frame 0 stays in pre-processing; frames 1-3 finish and wait for it.
        for i in 0..4 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        wait_until("frames 1-3 are pre-processed", || pre_finished(&finished).len() == 3);
        // The queue is full: each submit drops the oldest frame waiting (one finished
        // and waiting for frame 0, or one waiting for a worker).
        let mut dropped = Vec::new();
        for i in 4..13 {
            match q.submit(frame(i)) {
                Ok(Submitted::QueuedDroppedOldest(old)) => {
                    assert!(old.id > 0 && old.id < i, "frame {i} dropped frame {}", old.id);
                    dropped.push(old.id);
                }
                other => panic!("frame {i}: {other:?} (a frame always waits here)"),
            }
        }
        assert!(ran(&log).is_empty(), "frames ran before frame 0: {:?}", batch_ids(&log));
        drop(gate_tx);
        let kept = 13 - dropped.len() as u64;
        let mut outputs = Vec::new();
        for _ in 0..kept {
            let (out, after_drop) = next_frame(&rx);
            let gap = out.id != outputs.last().map_or(0, |&p: &u64| p + 1);
            assert_eq!(after_drop, gap, "after_drop of frame {} after {outputs:?}", out.id);
            outputs.push(out.id);
        }
        assert_eq!(outputs[0], 0);
        let mut all: Vec<u64> = outputs.iter().chain(&dropped).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..13).collect::<Vec<_>>(),
            "outputs {outputs:?}, dropped {dropped:?}"
        );
        assert_eq!(ran(&log), outputs, "the backend ran the frames kept, in order");
        assert_eq!(q.stats().snapshot().dropped, dropped.len() as u64);
        wait_until("permits are released", || q.in_flight() == 0);
    }

    #[test]
    fn a_flush_while_a_frame_is_pre_processed_does_not_hold_back_the_frames_after_it() {
        let (q, log, gate_tx, finished) = gated_queue(config(4, 16, 2), tunables(false, 0.0, Duration::from_secs(10)));
        // Frame 0 stays in pre-processing; frames 1-5 finish and wait for it.
        for i in 0..6 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        wait_until("frames 1-5 are pre-processed", || pre_finished(&finished).len() == 5);
        q.flush_start();
        q.flush_stop();
        wait_until("the frames held for frame 0 are let go", || q.in_flight() == 1);
        // After the flush, with frame 0 still in pre-processing: the new frames (and
        // an event, which has no frame number) come out, in full batches.
        let rx = spawn_receiver(q.arc());
        let mut expected = Vec::new();
        for i in 10..18 {
            if i == 14 {
                q.submit_event(200).unwrap();
                expected.push(Item::Event(200));
            }
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
            expected.push(Item::Frame {
                id: i,
                after_drop: false,
            });
        }
        let got: Vec<Item> = (0..expected.len()).map(|_| next_item(&rx)).collect();
        assert_eq!(got, expected);
        assert_eq!(batch_ids(&log), vec![vec![10, 11, 12, 13], vec![14, 15, 16, 17]]);
        // Frame 0 finishes after the flush: stale, it never runs.
        drop(gate_tx);
        wait_until("frame 0 releases its permit", || q.in_flight() == 0);
        q.shutdown();
        assert!(
            matches!(next(&rx), Recv::Closed),
            "nothing from before the flush came out"
        );
        assert_eq!(ran(&log), (10..18).collect::<Vec<_>>());
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
    // Errors
    // ---------------------------------------------------------------------

    #[test]
    fn backend_error_comes_out_at_the_failing_frames_position_and_the_queue_goes_on() {
        // One run at a time, and three in flight (batches finishing out of order).
        for runs in [1, 3] {
            let backend = FakeBackend {
                fail_on: Some(5),
                sleep: Duration::from_millis(runs as u64 - 1),
                ..FakeBackend::default()
            };
            let p = TestProc {
                size_multiple: 8,
                jitter: true,
                ..TestProc::default()
            };
            let mut cfg = config(1, 8, 4);
            cfg.concurrent_runs = runs;
            let q = start(cfg, tunables(false, 0.0, Duration::ZERO), p, factory_of(backend));
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
                        },
                        "runs {runs}"
                    ),
                }
            }
            wait_until("permits are released", || q.in_flight() == 0);
        }
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
}
