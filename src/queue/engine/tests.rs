//! Engine tests of several queues sharing one engine, with a fake processor and
//! fake backends (no GStreamer, no ONNX Runtime). Frames carry ids `1000 * stream
//! + n`, which the fake backend logs, so that each batch's streams are known.
use super::*;
use crate::backend::Backend;
use crate::queue::fakes::*;
use crate::queue::support::{self, config, factory_of, spawn_receiver, tunables};
use crate::queue::{BatchStage, FrameQueue, NoStages, QueueConfig, Submitted, Tunables};
use crate::tensors::Pooled;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

fn settings(model: &str) -> Vec<(String, String)> {
    vec![
        ("model".to_string(), model.to_string()),
        ("provider".to_string(), "cpu".to_string()),
    ]
}

pub(super) fn join(engine: &Arc<Engine>, cfg: QueueConfig, tun: Arc<Tunables>) -> Guard {
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
    let engine = Engine::shared("engine-test-four", settings("m"), 4, 1, || factory_of(backend)).unwrap();
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
    let feeders = feed_streams(&queues, n);
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
fn streams_on_a_shared_engine_run_their_frames_in_order_when_pre_processing_finishes_out_of_order() {
    let log = Log::default();
    let backend = FakeBackend {
        log: log.clone(),
        ..FakeBackend::default()
    };
    let engine = Engine::shared("engine-test-overtake", settings("m"), 4, 1, || factory_of(backend)).unwrap();
    let n = 12u64;
    // Two workers per stream; in each, some frames finish pre-processing only after
    // the frame after them.
    let overtaken = [vec![1002, 1005, 1009], vec![2000, 2003, 2007]];
    let queues: Vec<Guard> = overtaken
        .iter()
        .map(|ids| {
            let p = TestProc {
                size_multiple: 8,
                overtaken: ids.clone(),
                ..TestProc::default()
            };
            support::Guard(Arc::new(
                FrameQueue::with_engine(
                    config(4, 16, 2),
                    tunables(false, 0.0, Duration::from_secs(10)),
                    Arc::new(p),
                    Arc::new(NoStages),
                    engine.clone(),
                )
                .expect("queue starts"),
            ))
        })
        .collect();
    let receivers: Vec<_> = queues.iter().map(|q| spawn_receiver(q.arc())).collect();
    let feeders = feed_streams(&queues, n);
    for (s, rx) in receivers.iter().enumerate() {
        for i in 0..n {
            assert_eq!(
                next_frame(rx).0.id,
                1000 * (s as u64 + 1) + i,
                "stream {s} out of order"
            );
        }
    }
    for f in feeders {
        f.recv_timeout(WAIT).expect("feeder done");
    }
    // 24 frames: 6 full batches (a long batch timeout), each stream's frames in them
    // in its order.
    let batches = batch_ids(&log);
    assert!(batches.iter().all(|b| b.len() == 4), "{batches:?}");
    for s in 1..=2u64 {
        let ran: Vec<u64> = batches.concat().into_iter().filter(|id| id / 1000 == s).collect();
        assert_eq!(
            ran,
            (0..n).map(|i| 1000 * s + i).collect::<Vec<_>>(),
            "stream {s}'s frames ran out of order: {batches:?}"
        );
    }
}

#[test]
fn a_flush_on_one_stream_discards_only_its_frames() {
    let log = Log::default();
    let (backend, gate_tx, started) = gated(log.clone());
    let engine = Engine::shared("engine-test-flush", settings("m"), 2, 1, || factory_of(backend)).unwrap();
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
    let engine = Engine::shared(id, settings("m"), 1, 1, make(dropped.clone(), built.clone())).unwrap();
    let a = join(&engine, config(1, 4, 1), tunables(false, 0.0, Duration::ZERO));
    let b = join(&engine, config(1, 4, 1), tunables(false, 0.0, Duration::ZERO));
    let again = Engine::shared(id, settings("m"), 1, 1, make(dropped.clone(), built.clone())).unwrap();
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
    let fresh = Engine::shared(id, settings("m"), 1, 1, make(dropped.clone(), built.clone())).unwrap();
    assert_eq!(
        built.load(Ordering::SeqCst),
        2,
        "a new engine after the last one stopped"
    );
    assert_eq!(fresh.streams(), 0);
}

#[test]
fn mismatched_settings_under_one_id_are_an_error_naming_the_id() {
    let engine = Engine::shared("engine-test-mismatch", settings("a.onnx"), 2, 1, || {
        factory_of(FakeBackend::default())
    })
    .unwrap();
    let err = Engine::shared("engine-test-mismatch", settings("b.onnx"), 2, 1, || {
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
    let err = Engine::shared("engine-test-mismatch", settings("a.onnx"), 4, 1, || {
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
    let engine = Engine::shared("engine-test-fatal", settings("m"), 1, 1, factory).unwrap();
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
    let engine = Engine::shared("engine-test-sigma", settings("m"), 4, 1, || factory_of(backend)).unwrap();
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
    let engine = Engine::shared("engine-test-sizes", settings("m"), 4, 1, || factory_of(backend)).unwrap();
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
    let engine = Engine::shared("engine-test-leaky", settings("m"), 1, 1, || factory_of(backend)).unwrap();
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
