//! The service's streams: their settings, their statuses as the API shows them, and the
//! registry that adds, lists and removes them. Each runs in a watcher thread of its own
//! (see [`super::watcher`]).
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::spec::{Plan, StreamSpec};
use super::watcher;
use crate::common::ElementOpts;

/// What every stream of the service shares: the element's options and the engine.
#[derive(Debug)]
pub struct Settings {
    pub element: ElementOpts,
    /// The `model-instance-id` of every stream's element: one shared engine.
    pub engine_id: String,
    /// Whether the model gives class maps (overlay and mask outputs need them).
    pub segments: bool,
    /// H.264 bitrate of video outputs, kbit/s.
    pub bitrate: u32,
    /// Longest wait for EOS to pass through a stopping stream's muxers.
    pub stop_timeout: Duration,
    /// `-v`: print each pipeline's description.
    pub verbose: bool,
}

/// A stream's state, as the API shows it.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    Reconnecting,
    Stopping,
    Finished,
    Failed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Reconnecting => "reconnecting",
            State::Stopping => "stopping",
            State::Finished => "finished",
            State::Failed => "failed",
        }
    }

    pub const ALL: [State; 6] = [
        State::Starting,
        State::Running,
        State::Reconnecting,
        State::Stopping,
        State::Finished,
        State::Failed,
    ];
}

/// The engine's figures, as the last element sample gave them.
#[derive(Serialize, Debug, Clone, Copy, Default)]
pub struct EngineFigures {
    pub mean_batch_frames: f64,
    /// Share of the inference thread's time spent running the model.
    pub busy: f64,
    /// Elements on the engine.
    pub streams: u64,
}

/// A stream as the API shows it.
#[derive(Serialize, Debug, Clone)]
pub struct Status {
    pub id: String,
    #[serde(flatten)]
    pub spec: StreamSpec,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Frames the element gave, over every reconnection.
    pub frames: u64,
    pub drops: u64,
    pub fps: f64,
    /// The element's mean latency, milliseconds.
    pub latency_ms: f64,
    pub reconnects: u32,
    /// What became of each file (after the stream ended).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    #[serde(skip)]
    pub engine: Option<EngineFigures>,
}

/// One stream: its status, shared with its watcher thread, and that thread.
pub struct Stream {
    status: Mutex<Status>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The files it writes, for the next streams' checks.
    files: Vec<(String, PathBuf)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stream {
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    pub(super) fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut lock(&self.status));
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Asks the watcher to stop and waits for it (blocking: call off the runtime).
    pub fn stop_and_join(&self) -> Status {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        self.status()
    }
}

/// Why a stream could not be added.
pub struct AddError {
    pub error: anyhow::Error,
    /// The request's fault (a bad uri, view, size or output), else the service's (a
    /// plugin missing, no thread).
    pub bad_request: bool,
}

impl AddError {
    fn request(error: anyhow::Error) -> AddError {
        AddError {
            error,
            bad_request: true,
        }
    }

    fn service(error: anyhow::Error) -> AddError {
        AddError {
            error,
            bad_request: false,
        }
    }
}

/// Every stream of the service.
pub struct Registry {
    pub settings: Settings,
    next: AtomicU64,
    streams: Mutex<BTreeMap<u64, Arc<Stream>>>,
    /// Held while a stream is checked and added, so that two added at once cannot both
    /// take one output file (`streams` stays free for the API's reads meanwhile).
    adding: Mutex<()>,
    pub started: Instant,
}

impl Registry {
    pub fn new(settings: Settings) -> Registry {
        Registry {
            settings,
            next: AtomicU64::new(1),
            streams: Mutex::new(BTreeMap::new()),
            adding: Mutex::new(()),
            started: Instant::now(),
        }
    }

    pub fn list(&self) -> Vec<Status> {
        lock(&self.streams).values().map(|s| s.status()).collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Stream>> {
        let n: u64 = id.parse().ok()?;
        lock(&self.streams).get(&n).cloned()
    }

    /// Removes a stream from the list (its thread is stopped by the caller).
    pub fn remove(&self, id: &str) -> Option<Arc<Stream>> {
        let n: u64 = id.parse().ok()?;
        lock(&self.streams).remove(&n)
    }

    pub fn take_all(&self) -> Vec<Arc<Stream>> {
        std::mem::take(&mut *lock(&self.streams)).into_values().collect()
    }

    /// Checks a spec, builds its first pipeline and starts its watcher: an error here is
    /// the client's (a bad uri, view or output) or the service's (a missing plugin).
    /// Blocking (file checks, pipeline build): call off the runtime.
    pub fn add(self: &Arc<Self>, spec: StreamSpec) -> Result<Status, AddError> {
        let _adding = lock(&self.adding);
        // Every listed stream's files, a finished one's too: its status tells what it
        // wrote there until it is deleted.
        let taken: Vec<(String, PathBuf)> = lock(&self.streams).values().flat_map(|s| s.files.clone()).collect();
        let plan = Plan::check(&spec, self.settings.segments, &taken).map_err(AddError::request)?;
        let number = self.next.fetch_add(1, Ordering::SeqCst);
        let id = number.to_string();
        let first = watcher::Attempt::build(&plan, &self.settings, 0).map_err(AddError::service)?;
        let stream = Arc::new(Stream {
            status: Mutex::new(Status {
                id: id.clone(),
                spec,
                state: State::Starting,
                error: None,
                frames: 0,
                drops: 0,
                fps: 0.0,
                latency_ms: 0.0,
                reconnects: 0,
                files: Vec::new(),
                engine: None,
            }),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            files: plan.files(&id),
        });
        let registry = self.clone();
        let watched = stream.clone();
        let thread = std::thread::Builder::new()
            .name(format!("stream-{id}"))
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| watcher::watch(&registry.settings, &watched, &plan, first));
                if std::panic::catch_unwind(run).is_err() {
                    watched.update(|s| {
                        s.state = State::Failed;
                        s.error = Some("the stream's watcher thread panicked".into());
                    });
                }
            })
            .context("cannot start the stream's thread")
            .map_err(AddError::service)?;
        *lock(&stream.thread) = Some(thread);
        // Listed once its thread is known, so that a DELETE always waits for it.
        lock(&self.streams).insert(number, stream.clone());
        eprintln!("stream {id}: {}", stream.status().spec.uri);
        Ok(stream.status())
    }
}
