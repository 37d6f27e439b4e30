//! What the engine sees of one stream ([`Port`]) and a queue's port ([`QueuePort`]).
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender};

use crate::queue::{panic_message, BatchStage, Done, DoneKind, Permit, Processor, Shared, Staged};
use crate::tensors::Pooled;
use crate::Error;

/// A frame taken for a batch: its stream's number for it, which hands it back.
pub(in crate::queue) type Ticket = u64;

/// What the engine thread sees of one stream: the end of its queue's inference channel,
/// its batch stage, and the way back to its post-processing workers.
///
/// Frames are taken with a [`Ticket`] and handed back by it, in any order: with more
/// than one run in flight (`inference-streams`), a later batch may finish first.
pub(in crate::queue) trait Port: Send {
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
    /// Hands the frame taken as `ticket` back to post-processing with its results.
    fn finish(&mut self, ticket: Ticket, t: Pooled);
    /// Fails the frame taken as `ticket`.
    fn fail(&mut self, ticket: Ticket, e: &Error);
    /// Counts a model run with frames of this stream.
    fn count_run(&mut self);
    /// Forgets the frame taken as `ticket` (its stream closed before it ran).
    fn discard(&mut self, ticket: Ticket);
    /// Frames taken and not yet handed back (in a batch being filled or run).
    fn outstanding(&self) -> usize;
    /// The backend could not be built: reported once, at no position.
    fn fatal(&mut self, e: &Error);
    /// After `fatal`: frees the position of every frame waiting (nothing blocks).
    fn drain_failed(&mut self);
}

pub(in crate::queue) enum Take {
    Empty,
    Taken(Pooled, Ticket),
    /// The next frame has another padded size: kept for the next batch.
    Other,
}

type Meta<F> = (u64, u64, F, Permit, Instant);

/// A queue's [`Port`].
pub(in crate::queue) struct QueuePort<P: Processor, E> {
    id: u64,
    sh: Arc<Shared<P, E>>,
    rx: Receiver<Staged<P::Frame>>,
    tx: Sender<Staged<P::Frame>>,
    stage: Box<dyn BatchStage>,
    stage_epoch: u64,
    pending: Option<Staged<P::Frame>>,
    /// The frames taken, by ticket: `taken[i]` is ticket `base + i`, `None` once
    /// handed back (the front is popped as soon as it is).
    taken: VecDeque<Option<Meta<P::Frame>>>,
    base: Ticket,
    outstanding: usize,
}

impl<P: Processor, E: Send + 'static> QueuePort<P, E> {
    pub(in crate::queue) fn new(
        id: u64,
        sh: Arc<Shared<P, E>>,
        rx: Receiver<Staged<P::Frame>>,
        tx: Sender<Staged<P::Frame>>,
    ) -> Self {
        QueuePort {
            id,
            stage: sh.stages.batch_stage(),
            stage_epoch: sh.epoch.load(Ordering::Acquire),
            sh,
            rx,
            tx,
            pending: None,
            taken: VecDeque::new(),
            base: 0,
            outstanding: 0,
        }
    }

    /// The metadata of the frame taken as `ticket`, once.
    fn hand_back(&mut self, ticket: Ticket) -> Option<Meta<P::Frame>> {
        let i = usize::try_from(ticket.checked_sub(self.base)?).ok()?;
        let meta = self.taken.get_mut(i)?.take()?;
        self.outstanding -= 1;
        while matches!(self.taken.front(), Some(None)) {
            self.taken.pop_front();
            self.base += 1;
        }
        Some(meta)
    }
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
            let ticket = self.base + self.taken.len() as Ticket;
            self.taken.push_back(Some((seq, epoch, frame, permit, t0)));
            self.outstanding += 1;
            return Take::Taken(tensors, ticket);
        }
    }

    fn batch_timeout(&self) -> Duration {
        self.sh.tunables.batch_timeout()
    }

    fn finish(&mut self, ticket: Ticket, tensors: Pooled) {
        if let Some((seq, epoch, frame, permit, t0)) = self.hand_back(ticket) {
            self.sh.stats.inferred.fetch_add(1, Ordering::Relaxed);
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

    fn fail(&mut self, ticket: Ticket, e: &Error) {
        if let Some((seq, ..)) = self.hand_back(ticket) {
            self.sh.done(seq, DoneKind::Error(e.duplicate()));
        }
    }

    fn count_run(&mut self) {
        self.sh.stats.batches.fetch_add(1, Ordering::Relaxed);
    }

    fn discard(&mut self, ticket: Ticket) {
        self.hand_back(ticket);
    }

    fn outstanding(&self) -> usize {
        self.outstanding
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
