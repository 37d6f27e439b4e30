//! The engine's threads: the dispatcher (the engine thread proper), which builds the
//! backends, joins and detaches streams and fills batches from their ports, and the
//! runners, one per backend (`concurrent-runs`), each running one batch at a time.
//!
//! A batch is filled only when a runner is free, so frames wait in their streams'
//! inference channels (where `leaky` can drop them) rather than in the engine. Each
//! frame goes back to its stream by its ticket, so batches finishing out of order
//! (two runners) are fine: the stream's reorder puts frames back in order.
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use super::port::{Port, Take, Ticket};
use super::{BackendInfo, Ctl, EngineCounters};
use crate::backend::{Backend, BackendFactory};
use crate::queue::{lock, panic_message};
use crate::tensors::Pooled;
use crate::{Error, Result};

/// A batch for a runner: its frames and, for each, its (stream, ticket).
struct Job {
    batch: Vec<Pooled>,
    owners: Vec<(u64, Ticket)>,
}

/// A runner's answer: the job (its frames with their results) and how the run went.
struct Ran {
    job: Job,
    result: Result<()>,
}

/// The engine's streams and the detaches waiting for their frames to come back.
struct Streams {
    ports: Vec<Box<dyn Port>>,
    leaving: Vec<(u64, Sender<()>)>,
}

impl Streams {
    fn port(&mut self, stream: u64) -> Option<&mut Box<dyn Port>> {
        self.ports.iter_mut().find(|p| p.stream() == stream)
    }

    /// Handles the control messages waiting; false when the engine is dropped.
    fn control(&mut self, ctl: &Receiver<Ctl>, fatal: &Option<Error>) -> bool {
        loop {
            match ctl.try_recv() {
                Ok(Ctl::Join(mut port)) => {
                    if let Some(e) = fatal {
                        port.fatal(e);
                    }
                    self.ports.push(port);
                }
                Ok(Ctl::Leave(stream, ack)) => self.leaving.push((stream, ack)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        self.settle();
        true
    }

    /// Lets go of the streams leaving once no frame of theirs is in a run.
    fn settle(&mut self) {
        let ports = &mut self.ports;
        self.leaving.retain(|(stream, ack)| {
            let busy = ports.iter().any(|p| p.stream() == *stream && p.outstanding() > 0);
            if !busy {
                ports.retain(|p| p.stream() != *stream);
                let _ = ack.send(());
            }
            busy
        });
    }

    /// Hands a finished run's frames back to their streams; returns the empty job.
    fn hand_back(&mut self, ran: Ran) -> Job {
        let Ran { mut job, result } = ran;
        for i in 0..job.owners.len() {
            let stream = job.owners[i].0;
            if !job.owners[..i].iter().any(|&(s, _)| s == stream) {
                if let Some(p) = self.port(stream) {
                    p.count_run();
                }
            }
        }
        match result {
            Ok(()) => {
                for (t, (stream, ticket)) in job.batch.drain(..).zip(job.owners.drain(..)) {
                    if let Some(p) = self.port(stream) {
                        p.finish(ticket, t);
                    }
                }
            }
            Err(e) => {
                job.batch.clear();
                for (stream, ticket) in job.owners.drain(..) {
                    if let Some(p) = self.port(stream) {
                        p.fail(ticket, &e);
                    }
                }
            }
        }
        job
    }
}

/// Waits until a control message, a finished run (`ran`), or a frame of a stream that
/// is neither closed nor keeping a frame (with `frames`) may be there, or until
/// `deadline`. Returns false on timeout.
fn wait(
    ctl: &Receiver<Ctl>,
    ran: Option<&Receiver<Ran>>,
    ports: &[Box<dyn Port>],
    frames: bool,
    deadline: Option<Instant>,
) -> bool {
    let mut sel = Select::new();
    sel.recv(ctl);
    if let Some(r) = ran {
        sel.recv(r);
    }
    if frames {
        for p in ports.iter().filter(|p| !p.closed() && !p.has_pending()) {
            p.watch(&mut sel);
        }
    }
    match deadline {
        Some(d) => sel.ready_deadline(d).is_ok(),
        None => {
            sel.ready();
            true
        }
    }
}

/// Builds the backend with `factory`, then `runs - 1` replicas of it.
fn build(factory: BackendFactory, runs: usize) -> Result<Vec<Box<dyn Backend>>> {
    let first = factory()?;
    let mut all = Vec::with_capacity(runs);
    for _ in 1..runs {
        all.push(first.replicate()?);
    }
    all.insert(0, first);
    Ok(all)
}

pub(super) fn engine_thread(
    ctl: Receiver<Ctl>,
    batch_size: usize,
    runs: usize,
    counters: Arc<EngineCounters>,
    factory: BackendFactory,
) {
    let started = Instant::now();
    let built =
        catch_unwind(AssertUnwindSafe(|| build(factory, runs))).unwrap_or_else(|p| Err(Error::Panic(panic_message(p))));
    let mut streams = Streams {
        ports: Vec::new(),
        leaving: Vec::new(),
    };
    let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(runs);
    let (ran_tx, ran_rx) = crossbeam_channel::unbounded::<Ran>();
    let mut runners: Vec<JoinHandle<()>> = Vec::new();
    let fatal = match built {
        Ok(backends) => {
            *lock(&counters.backend) = BackendInfo {
                name: backends[0].name(),
                engine_cache: backends[0].engine_cache(),
                build: started.elapsed(),
                runners: backends.len(),
            };
            let mut fatal = None;
            for (i, backend) in backends.into_iter().enumerate() {
                let (jobs, ran, c) = (job_rx.clone(), ran_tx.clone(), counters.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("dseg-run-{i}"))
                    .spawn(move || runner(backend, jobs, ran, c));
                match spawned {
                    Ok(t) => runners.push(t),
                    Err(e) => {
                        fatal = Some(Error::Invalid(format!("cannot start an inference thread: {e}")));
                        break;
                    }
                }
            }
            fatal
        }
        Err(e) => Some(e),
    };
    drop((job_rx, ran_tx));
    if streams.control(&ctl, &None) {
        match &fatal {
            Some(e) => {
                for p in streams.ports.iter_mut() {
                    p.fatal(e);
                }
                failed(&ctl, &mut streams, &fatal);
            }
            None => dispatch(&ctl, &mut streams, batch_size, runs, &job_tx, &ran_rx),
        }
    }
    // The runners end with the job channel, after the batch they run.
    drop(job_tx);
    for t in runners {
        let _ = t.join();
    }
}

/// Without a backend: keeps draining, so that each frame's permit is released and its
/// position freed (the error was reported once), and events queued behind frames, EOS
/// or a drain, still come out and nothing blocks.
fn failed(ctl: &Receiver<Ctl>, streams: &mut Streams, fatal: &Option<Error>) {
    while streams.control(ctl, fatal) {
        for p in streams.ports.iter_mut() {
            p.drain_failed();
        }
        wait(ctl, None, &streams.ports, true, None);
    }
}

/// The dispatcher's loop: hands finished runs back, fills a batch whenever a runner is
/// free, and hands it to the runners.
fn dispatch(
    ctl: &Receiver<Ctl>,
    streams: &mut Streams,
    batch_size: usize,
    runs: usize,
    jobs: &Sender<Job>,
    ran: &Receiver<Ran>,
) {
    let mut free: Vec<Job> = (0..runs)
        .map(|_| Job {
            batch: Vec::with_capacity(batch_size),
            owners: Vec::with_capacity(batch_size),
        })
        .collect();
    // Where the next round of takes starts, so that no stream is always first.
    let mut rr = 0usize;
    loop {
        while let Ok(r) = ran.try_recv() {
            free.push(streams.hand_back(r));
        }
        if !streams.control(ctl, &None) {
            return;
        }
        let Some(mut job) = free.pop() else {
            // Every runner busy: wait for one to finish (or a control message).
            wait(ctl, Some(ran), &streams.ports, false, None);
            continue;
        };
        fill(&mut job, streams, batch_size, rr, ctl, ran, &mut free);
        rr = rr.wrapping_add(1);
        if job.batch.is_empty() {
            free.push(job);
            wait(ctl, Some(ran), &streams.ports, true, None);
            continue;
        }
        if let Err(e) = jobs.send(job) {
            // Only if every runner ended (they end with the channel): give the frames back as failed.
            let err = Error::Invalid("the inference threads are gone".into());
            free.push(streams.hand_back(Ran {
                job: e.into_inner(),
                result: Err(err),
            }));
        }
    }
}

/// Fills `job` with frames of one padded size: one frame per stream per round, from
/// all streams, until `batch_size` or the smallest batch timeout of the streams; a
/// control message ends the filling (the batch runs as it is). Runs finishing
/// meanwhile are handed back at once (their jobs go to `free`). Frames of a stream shut
/// down while the batch filled are left out.
fn fill(
    job: &mut Job,
    streams: &mut Streams,
    batch_size: usize,
    rr: usize,
    ctl: &Receiver<Ctl>,
    ran: &Receiver<Ran>,
    free: &mut Vec<Job>,
) {
    let mut shape: Option<(usize, usize)> = None;
    let mut deadline: Option<Instant> = None;
    while job.batch.len() < batch_size {
        while let Ok(r) = ran.try_recv() {
            free.push(streams.hand_back(r));
        }
        let ports = &mut streams.ports;
        let n = ports.len();
        let mut progress = false;
        for k in 0..n {
            if job.batch.len() == batch_size {
                break;
            }
            let p = &mut ports[(rr + k) % n];
            if p.closed() {
                continue;
            }
            if let Take::Taken(t, ticket) = p.take(shape) {
                shape.get_or_insert((t.pw, t.ph));
                job.batch.push(t);
                job.owners.push((p.stream(), ticket));
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
        if job.batch.is_empty() {
            break;
        }
        // Wait for more until the deadline; a control message ends the wait (and the
        // filling: the batch runs as it is).
        if !wait(ctl, Some(ran), ports, true, deadline) || !ctl.is_empty() {
            break;
        }
    }
    let mut i = 0;
    while i < job.batch.len() {
        let (stream, ticket) = job.owners[i];
        match streams.port(stream) {
            Some(p) if !p.closed() => i += 1,
            other => {
                if let Some(p) = other {
                    p.discard(ticket);
                }
                job.batch.remove(i);
                job.owners.remove(i);
            }
        }
    }
}

/// One runner: runs the batches it is given on its backend, times them, and answers.
fn runner(mut backend: Box<dyn Backend>, jobs: Receiver<Job>, ran: Sender<Ran>, counters: Arc<EngineCounters>) {
    let mut last_end: Option<Instant> = None;
    while let Ok(mut job) = jobs.recv() {
        let started = Instant::now();
        if let Some(end) = last_end {
            let gap = started.duration_since(end).as_micros() as u64;
            counters.starved_us.fetch_add(gap, Ordering::Relaxed);
        }
        let result = catch_unwind(AssertUnwindSafe(|| backend.run(&mut job.batch)))
            .unwrap_or_else(|p| Err(Error::Panic(panic_message(p))));
        let end = Instant::now();
        last_end = Some(end);
        counters
            .inference_us
            .fetch_add(end.duration_since(started).as_micros() as u64, Ordering::Relaxed);
        counters.runs.fetch_add(1, Ordering::Relaxed);
        counters.frames.fetch_add(job.batch.len() as u64, Ordering::Relaxed);
        if ran.send(Ran { job, result }).is_err() {
            return;
        }
    }
}
