//! What the tests of the queue and of the stages it runs share.
use super::*;
use crate::backend::Backend;
use std::ops::Deref;

/// A queue, shut down when the test ends (even when it fails).
pub(crate) struct Guard<P: Processor, E: Send + 'static>(pub(crate) Arc<FrameQueue<P, E>>);

impl<P: Processor, E: Send + 'static> Deref for Guard<P, E> {
    type Target = FrameQueue<P, E>;
    fn deref(&self) -> &FrameQueue<P, E> {
        &self.0
    }
}

impl<P: Processor, E: Send + 'static> Drop for Guard<P, E> {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl<P: Processor, E: Send + 'static> Guard<P, E> {
    pub(crate) fn arc(&self) -> Arc<FrameQueue<P, E>> {
        self.0.clone()
    }
}

/// A queue configuration with size multiple 8.
pub(crate) fn config(batch_size: usize, max_in_flight: usize, workers: usize) -> QueueConfig {
    QueueConfig {
        batch_size,
        max_in_flight,
        workers,
        size_multiple: 8,
        concurrent_runs: 1,
    }
}

pub(crate) fn tunables(leaky: bool, noise_level: f32, batch_timeout: Duration) -> Arc<Tunables> {
    Arc::new(Tunables::new(leaky, noise_level, batch_timeout))
}

/// A thread calling `recv` in a loop, forwarding everything but `Flushing`
/// (it stops after `Closed`).
pub(crate) fn spawn_receiver<P: Processor, E: Send + 'static>(
    q: Arc<FrameQueue<P, E>>,
) -> Receiver<Recv<P::Output, E>> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || loop {
        let r = q.recv();
        match r {
            Recv::Flushing => std::thread::sleep(Duration::from_millis(1)),
            Recv::Closed => {
                let _ = tx.send(r);
                return;
            }
            Recv::Item(_) => {
                if tx.send(r).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// A factory that hands out `backend` as it is.
pub(crate) fn factory_of<B: Backend + 'static>(backend: B) -> BackendFactory {
    Box::new(move || Ok(Box::new(backend) as Box<dyn Backend>))
}
