//! The hand-over from the pre-processing workers to the inference channel, in
//! submission order.
//!
//! The workers finish frames in any order (one frame takes longer, a worker is
//! descheduled); the engine batches frames in the order they reach the inference
//! channel. Straight from the workers, a batch of 8 could be frames 0-6 and 8, and
//! frame 7, in the next batch, held back every frame after it by a whole batch (the
//! stream's output is in order). So each frame gets a number at submission, counting
//! frames only (not events, not frames dropped at submission), and the workers hand
//! their frames here: a frame goes on only once every frame numbered before it has
//! gone on or is known never to come:
//!
//! - dropped while waiting (`leaky` takes the oldest one waiting, here or in the
//!   channels): [`Sequencer::skip`], or [`Sequencer::take_oldest`] for one held here;
//! - failed in pre-processing (an error or a panic): [`Sequencer::skip`];
//! - stale (a flush or shutdown): [`Sequencer::restart`] at `flush_stop` starts the
//!   numbering over after every frame numbered so far, and [`Sequencer::clear`] drops
//!   what is held (a stale frame handed over later is dropped).
//!
//! The slots are a ring kept for the queue's life (sized for `max_in_flight` frames
//! and only ever grown), so handing a frame over allocates nothing.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::Sender;

use super::{lock, Staged};

enum Slot<F> {
    /// Numbered, not yet handed over (in pre-processing, or waiting for it).
    Waiting,
    /// Pre-processed, waiting for a frame numbered before it.
    Held(Staged<F>),
    /// Will never come (dropped or failed): not waited for.
    Gone,
}

struct State<F> {
    /// The inference channel; `None` once the queue is shut down.
    tx: Option<Sender<Staged<F>>>,
    /// The number of the frame in `slots[0]`: every frame before it went on.
    base: u64,
    slots: VecDeque<Slot<F>>,
}

pub(super) struct Sequencer<F> {
    next: AtomicU64,
    state: Mutex<State<F>>,
}

impl<F> Sequencer<F> {
    pub(super) fn new(tx: Sender<Staged<F>>, capacity: usize) -> Self {
        Sequencer {
            next: AtomicU64::new(0),
            state: Mutex::new(State {
                tx: Some(tx),
                base: 0,
                slots: VecDeque::with_capacity(capacity),
            }),
        }
    }

    /// The next frame's number (at submission).
    pub(super) fn number(&self) -> u64 {
        self.next.fetch_add(1, Ordering::AcqRel)
    }

    /// Frame `n`, pre-processed, goes on to the inference channel once every frame
    /// before it has, held until then. A `stale` frame is dropped. False once the
    /// queue is shut down.
    pub(super) fn hand_over(&self, n: u64, s: Staged<F>, stale: impl Fn(u64) -> bool) -> bool {
        let mut st = lock(&self.state);
        if st.tx.is_none() {
            return false;
        }
        if stale(s.epoch) {
            return true;
        }
        if n < st.base {
            // Numbered before the restart of a flush that it raced (submitted as the
            // flush began): nothing of its kind is waited for; it goes on at once.
            return st.send(s);
        }
        st.put(n, Slot::Held(s));
        st.release()
    }

    /// Frame `n` will never be handed over: it is not waited for.
    pub(super) fn skip(&self, n: u64) {
        let mut st = lock(&self.state);
        if n >= st.base {
            st.put(n, Slot::Gone);
            st.release();
        }
    }

    /// Takes the oldest frame held here (for `leaky`), which is then not waited for.
    pub(super) fn take_oldest(&self) -> Option<Staged<F>> {
        let mut st = lock(&self.state);
        let slot = st.slots.iter_mut().find(|s| matches!(s, Slot::Held(_)))?;
        match std::mem::replace(slot, Slot::Gone) {
            Slot::Held(s) => Some(s),
            _ => None,
        }
    }

    /// Drops every frame held (a flush made them stale; each releases its permit and
    /// its tensors). The ring is kept.
    pub(super) fn clear(&self) {
        lock(&self.state).slots.clear();
    }

    /// After a flush (no submission running): the frames numbered from now on are the
    /// only ones waited for.
    pub(super) fn restart(&self) {
        let mut st = lock(&self.state);
        st.slots.clear();
        st.base = self.next.load(Ordering::Acquire);
    }

    /// Shutdown: drops what is held and the inference channel's sender.
    pub(super) fn close(&self) {
        let mut st = lock(&self.state);
        st.tx = None;
        st.slots.clear();
    }
}

impl<F> State<F> {
    fn put(&mut self, n: u64, slot: Slot<F>) {
        let i = (n - self.base) as usize;
        while self.slots.len() <= i {
            self.slots.push_back(Slot::Waiting);
        }
        self.slots[i] = slot;
    }

    fn send(&self, s: Staged<F>) -> bool {
        match &self.tx {
            Some(tx) => tx.send(s).is_ok(),
            None => false,
        }
    }

    /// Sends on every frame at the front that waits for nothing any more.
    fn release(&mut self) -> bool {
        while matches!(self.slots.front(), Some(Slot::Held(_) | Slot::Gone)) {
            self.base += 1;
            if let Some(Slot::Held(s)) = self.slots.pop_front() {
                if !self.send(s) {
                    return false;
                }
            }
        }
        true
    }
}
