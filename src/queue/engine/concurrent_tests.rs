//! Engine tests with more than one model run in flight (`concurrent-runs` 2 and 3):
//! batches overlap and finish out of order, yet every stream's frames come out in
//! order, each exactly once, with exact counts.
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::tests::join;
use super::Engine;
use crate::backend::Backend;
use crate::queue::fakes::*;
use crate::queue::support::{config, factory_of, spawn_receiver, tunables};
use crate::queue::{lock, FrameQueue, NoStages, QueueConfig, Submitted};
use crate::tensors::Pooled;
use crate::Result;

/// Sleeps a few milliseconds depending on the batch's first frame id (so that later
/// batches often finish first), adds 0.5 to every sample, logs each batch, and counts
/// the runs in flight at once and the replicas made.
#[derive(Clone, Default)]
struct Jittery {
    log: Log,
    running: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
    replicas: Arc<AtomicU64>,
}

impl Backend for Jittery {
    fn replicate(&self) -> Result<Box<dyn Backend>> {
        self.replicas.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(self.clone()))
    }

    fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        let first = batch[0].image[0] as u64;
        lock(&self.log).push(BatchLog {
            ids: batch.iter().map(|t| t.image[0] as u64).collect(),
            padded: (batch[0].pw, batch[0].ph),
        });
        std::thread::sleep(Duration::from_millis(1 + (first * 7) % 6));
        for t in batch.iter_mut() {
            t.image.iter_mut().for_each(|v| *v += 0.5);
            t.denoised = true;
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

fn with_runs(mut cfg: QueueConfig, runs: usize) -> QueueConfig {
    cfg.concurrent_runs = runs;
    cfg
}

#[test]
fn a_private_engine_with_two_and_three_runs_keeps_order_and_counts_each_frame_once() {
    for runs in [2usize, 3] {
        let backend = Jittery::default();
        let (log, most, replicas) = (
            backend.log.clone(),
            backend.most_at_once.clone(),
            backend.replicas.clone(),
        );
        let q = start(
            with_runs(config(2, 16, 2), runs),
            tunables(false, 0.0, Duration::from_millis(2)),
            TestProc {
                jitter: true,
                ..proc_(8)
            },
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        let n = 60u64;
        let feeder = {
            let q = q.arc();
            spawn_call(move || {
                for i in 0..n {
                    assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
                }
            })
        };
        for i in 0..n {
            let (out, after_drop) = next_frame(&rx);
            assert_eq!(out.id, i, "runs {runs}: out of order");
            assert_eq!(out.value, i as f32 + 0.5, "runs {runs}: another frame's result");
            assert!(!after_drop);
        }
        feeder.recv_timeout(WAIT).expect("feeder done");
        let ran: Vec<u64> = batch_ids(&log).concat();
        assert_eq!(ran.len() as u64, n, "runs {runs}: every frame ran exactly once");
        assert_eq!(ran.iter().collect::<HashSet<_>>().len() as u64, n);
        assert_eq!(replicas.load(Ordering::SeqCst), runs as u64 - 1);
        assert!(
            most.load(Ordering::SeqCst) >= 2,
            "runs {runs}: never two batches in the backends at once"
        );
        let st = q.stats().snapshot();
        assert_eq!(st.processed, n);
        assert_eq!(st.dropped, 0);
        assert_eq!(st.concurrent_runs, runs as u64);
        assert_eq!(st.batches, batch_ids(&log).len() as u64);
        assert_eq!(st.engine_cache, "off");
        wait_until("every permit released", || q.in_flight() == 0);
    }
}

#[test]
fn two_runs_hold_two_batches_at_once_and_a_third_waits_for_a_free_one() {
    let (backend, gate_tx, started) = gated(Log::default());
    let q = start(
        with_runs(config(1, 8, 1), 2),
        tunables(false, 0.0, Duration::ZERO),
        proc_(8),
        factory_of(backend),
    );
    let rx = spawn_receiver(q.arc());
    for i in 0..4 {
        assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
    }
    let mut first_two = [started.recv_timeout(WAIT).unwrap(), started.recv_timeout(WAIT).unwrap()];
    first_two.sort();
    assert_eq!(first_two, [vec![0], vec![1]], "both runners hold a batch");
    assert!(
        started.recv_timeout(QUIET).is_err(),
        "a third batch started with both runners busy"
    );
    // Open one run: one more batch starts.
    gate_tx.send(()).unwrap();
    assert!(started.recv_timeout(WAIT).is_ok());
    drop(gate_tx);
    for i in 0..4 {
        assert_eq!(next_frame(&rx).0.id, i);
    }
    assert_eq!(q.stats().snapshot().processed, 4);
}

#[test]
fn three_streams_on_a_shared_engine_with_two_runs_keep_their_own_order() {
    let backend = Jittery::default();
    let log = backend.log.clone();
    let engine = Engine::shared("engine-test-runs", settings(), 3, 2, || factory_of(backend)).unwrap();
    assert_eq!(engine.concurrent_runs(), 2);
    let queues: Vec<Guard> = (0..3)
        .map(|_| {
            join(
                &engine,
                with_runs(config(3, 12, 1), 2),
                tunables(false, 0.0, Duration::from_millis(3)),
            )
        })
        .collect();
    let receivers: Vec<_> = queues.iter().map(|q| spawn_receiver(q.arc())).collect();
    let n = 30u64;
    let feeders = feed_streams(&queues, n);
    for (s, rx) in receivers.iter().enumerate() {
        for i in 0..n {
            let (out, _) = next_frame(rx);
            assert_eq!(out.id, 1000 * (s as u64 + 1) + i, "stream {s} out of order");
            assert_eq!(out.value, out.id as f32 + 0.5);
        }
    }
    for f in feeders {
        f.recv_timeout(WAIT).expect("feeder done");
    }
    let all: Vec<u64> = batch_ids(&log).concat();
    assert_eq!(all.len() as u64, 3 * n, "every frame ran exactly once");
    assert_eq!(all.iter().collect::<HashSet<_>>().len() as u64, 3 * n);
    for q in &queues {
        let st = q.stats().snapshot();
        assert_eq!(st.processed, n);
        assert_eq!(st.concurrent_runs, 2);
        assert_eq!(st.engine_streams, 3);
    }
    // Another number of runs under the same id is refused, naming the setting.
    let err = Engine::shared(
        "engine-test-runs",
        settings(),
        3,
        3,
        || -> crate::backend::BackendFactory { panic!("no second backend is built") },
    )
    .err()
    .expect("other concurrent-runs refused")
    .to_string();
    assert!(err.contains("concurrent-runs"), "{err}");
}

fn settings() -> Vec<(String, String)> {
    vec![("model".to_string(), "m".to_string())]
}

/// Runs batches but cannot replicate (the trait's default).
struct Single;

impl Backend for Single {
    fn run(&mut self, _batch: &mut [Pooled]) -> Result<()> {
        Ok(())
    }
}

#[test]
fn a_backend_that_cannot_replicate_fails_the_engine_with_a_clear_error() {
    let q = start(
        with_runs(config(1, 4, 1), 2),
        tunables(false, 0.0, Duration::ZERO),
        proc_(8),
        factory_of(Single),
    );
    let rx = spawn_receiver(q.arc());
    assert_eq!(q.submit(frame(1)), Ok(Submitted::Queued));
    let e = next_error(&rx).to_string();
    assert!(e.contains("concurrent-runs must be 1"), "{e}");
    // Out of range is refused before anything starts.
    let bad = FrameQueue::<TestProc, u64>::new(
        with_runs(config(1, 4, 1), 9),
        tunables(false, 0.0, Duration::ZERO),
        Arc::new(proc_(8)),
        Arc::new(NoStages),
        factory_of(Single),
    );
    assert!(bad.err().unwrap().to_string().contains("concurrent-runs 9"));
}
