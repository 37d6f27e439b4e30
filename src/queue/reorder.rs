//! Putting the queue's output back in submission order: each finished frame, event
//! or error lands in the slot of its sequence number, and [`FrameQueue::recv`] hands
//! the slots out strictly in order.
use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::{lock, Done, DoneKind, FrameQueue, Output, Processor, Recv};
use crate::Error;

pub(super) struct Reorder<O, E> {
    pub(super) base: u64,
    pub(super) slots: VecDeque<Option<DoneKind<O, E>>>,
    pub(super) after_drop: bool,
    pub(super) fatal: Option<Error>,
}

impl<P: Processor, E: Send + 'static> FrameQueue<P, E> {
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
}

#[cfg(test)]
mod tests {
    //! Engine tests of the queue with a fake processor and fake backends (no
    //! GStreamer, no ONNX Runtime). Things that must happen are awaited for up to
    //! `WAIT`; things that must not happen are watched for `QUIET`.
    use crate::queue::fakes::*;
    use crate::queue::support::{config, factory_of, spawn_receiver, tunables};
    use crate::queue::*;

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
            assert_eq!(s.inferred, n, "every frame counted once as the model ran it");
            assert_eq!(s.dropped, 0);
            assert_eq!(s.batches, batches.len() as u64);
            q.shutdown();
            assert!(matches!(next(&rx), Recv::Closed));
        }
    }
}
