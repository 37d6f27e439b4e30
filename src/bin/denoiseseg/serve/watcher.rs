//! A stream's watcher thread: it builds the stream's pipeline (one per reconnection),
//! plays it and watches its bus (state changes and bus waits never touch the HTTP
//! runtime), reconnects with exponential backoff, samples the element's figures into
//! the stream's status, and finalizes the outputs when asked to stop.
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use gst::prelude::*;

use super::spec::{Plan, MASK_WRITER};
use super::streams::{EngineFigures, Settings, State, Stream};
use crate::common::{self, Ending, OutputFile};

/// The first wait before a reconnection, doubled after each failed one up to
/// [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often the watcher looks at the bus, the stop flag and the element's figures.
const TICK: Duration = Duration::from_millis(100);
/// How often the figures (frames/s above all) are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// One pipeline of a stream: the first, or one per reconnection.
pub struct Attempt {
    pipeline: gst::Pipeline,
    element: gst::Element,
    outputs: Vec<OutputFile>,
}

impl Attempt {
    pub fn build(plan: &Plan, settings: &Settings, k: u32) -> Result<Attempt> {
        // The element's settings first, on a scratch element, for whether it runs leaky.
        let scratch = common::scratch_element()?;
        configure(&scratch, settings, plan.input.live)?;
        let desc = plan.description(k, settings.bitrate, scratch.property::<bool>("leaky"));
        if settings.verbose {
            eprintln!("pipeline: {desc}");
        }
        let pipeline = common::parse_pipeline(&desc)?;
        let element = pipeline
            .by_name("d")
            .ok_or_else(|| anyhow!("no denoiseseg element in the pipeline"))?;
        configure(&element, settings, plan.input.live)?;
        let mut outputs = Vec::new();
        if let Some(o) = &plan.output {
            outputs.push(OutputFile::watch(&pipeline, common::H264_MUX, &o.segment(k), false)?);
        }
        if let Some(m) = &plan.masks {
            outputs.push(OutputFile::watch(
                &pipeline,
                MASK_WRITER,
                &m.segment(k),
                m.mux.is_none(),
            )?);
        }
        Ok(Attempt {
            pipeline,
            element,
            outputs,
        })
    }
}

/// The service's element options on `element`: the shared engine's id, then leaky on a
/// live input, the preset and the options (see `ElementOpts::apply_for_input`).
fn configure(element: &gst::Element, settings: &Settings, live: bool) -> Result<()> {
    common::set_property_checked(element, "model-instance-id", &settings.engine_id)?;
    settings.element.apply_for_input(element, live).map(drop)
}

/// How one attempt ended.
enum Outcome {
    Eos,
    Stopped,
    Error(anyhow::Error),
}

/// The watcher thread: runs attempts until the stream finishes, fails for good, or is
/// stopped.
pub fn watch(settings: &Settings, stream: &Stream, plan: &Plan, first: Attempt) {
    let mut attempt = Some(first);
    let mut k = 0;
    let mut backoff = BACKOFF_START;
    let mut frames_before = (0u64, 0u64);
    loop {
        let next = match attempt.take() {
            Some(a) => Ok(a),
            None => Attempt::build(plan, settings, k),
        };
        let (outcome, figures) = match next {
            Ok(a) => run_attempt(stream, a, frames_before, settings.stop_timeout),
            Err(e) => (Outcome::Error(e), (0, 0)),
        };
        frames_before = (frames_before.0 + figures.0, frames_before.1 + figures.1);
        // A stream asked to stop never reconnects; one that had nothing to finalize when
        // an error beat the stop to it is finished all the same.
        let stopping = stream.stopping();
        let last = !plan.reconnect || stopping;
        let (state, error) = match outcome {
            Outcome::Stopped => (State::Finished, None),
            Outcome::Error(_) if stopping && figures.0 == 0 => (State::Finished, None),
            Outcome::Eos if last => (State::Finished, None),
            Outcome::Error(e) if last => (State::Failed, Some(common::error_line(&e))),
            Outcome::Eos => (State::Reconnecting, Some("the input ended".to_string())),
            Outcome::Error(e) => (State::Reconnecting, Some(common::error_line(&e))),
        };
        eprintln!(
            "stream {}: {}{}",
            stream.status().id,
            state.name(),
            error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
        );
        stream.update(|s| {
            s.state = state;
            s.error = error;
            s.fps = 0.0;
        });
        if state != State::Reconnecting {
            return;
        }
        // A connection that gave frames starts the backoff again.
        if figures.0 > 0 {
            backoff = BACKOFF_START;
        }
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if stream.stopping() {
                stream.update(|s| s.state = State::Finished);
                eprintln!(
                    "stream {}: finished (stopped while waiting to reconnect)",
                    stream.status().id
                );
                return;
            }
            std::thread::sleep(TICK);
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        k += 1;
        stream.update(|s| s.reconnects = k);
    }
}

/// Plays one pipeline to its end and back to NULL; returns how it ended and its
/// element's frames and drops. `before`: the frames and drops of earlier attempts.
fn run_attempt(stream: &Stream, a: Attempt, before: (u64, u64), stop_timeout: Duration) -> (Outcome, (u64, u64)) {
    let outcome = drive(stream, &a, before, stop_timeout);
    // The last figure: a stream shorter than one sampling period has none yet.
    let latency_ms = a
        .element
        .property::<gst::Structure>("stats")
        .get::<f64>("mean-latency-ms")
        .ok();
    let _ = a.pipeline.set_state(gst::State::Null);
    let figures = (
        a.element.property::<u64>("frames-processed"),
        a.element.property::<u64>("frames-dropped"),
    );
    let ending = match &outcome {
        Outcome::Eos => Ending::Eos,
        Outcome::Stopped if figures.0 == 0 => Ending::BeforeFirstFrame,
        Outcome::Stopped => Ending::Interrupted,
        Outcome::Error(_) => Ending::Aborted,
    };
    let files: Vec<String> = a.outputs.iter().map(|o| o.conclude(ending)).collect();
    // A camera that never answers would add a line per output at every try.
    let tell = figures.0 > 0 || !matches!(outcome, Outcome::Error(_));
    stream.update(|s| {
        if tell {
            s.files.extend(files);
        }
        s.frames = before.0 + figures.0;
        s.drops = before.1 + figures.1;
        if let (true, Some(ms)) = (figures.0 > 0, latency_ms) {
            s.latency_ms = ms;
        }
    });
    (outcome, figures)
}

fn drive(stream: &Stream, a: &Attempt, before: (u64, u64), stop_timeout: Duration) -> Outcome {
    let Some(bus) = a.pipeline.bus() else {
        return Outcome::Error(anyhow!("the pipeline has no bus"));
    };
    if a.pipeline.set_state(gst::State::Playing).is_err() {
        return Outcome::Error(common::first_error(&bus).unwrap_or_else(|| anyhow!("the pipeline refused to start")));
    }
    let mut sampler = Sampler::new();
    let mut stop_deadline: Option<Instant> = None;
    loop {
        // The stop flag first: once it is set, an error of the input no longer counts.
        match stop_deadline {
            None if stream.stopping() => {
                stream.update(|s| s.state = State::Stopping);
                // Nothing to finalize before the first frame (a camera still connecting
                // may never pass EOS on).
                if a.element.property::<u64>("frames-processed") == 0 {
                    return Outcome::Stopped;
                }
                a.pipeline.send_event(gst::event::Eos::new());
                stop_deadline = Some(Instant::now() + stop_timeout);
            }
            Some(deadline) if Instant::now() > deadline => {
                return Outcome::Error(anyhow!(
                    "EOS did not pass through the pipeline within {} s: outputs may not be finalized",
                    stop_timeout.as_secs()
                ));
            }
            _ => {}
        }
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(TICK.as_millis() as u64)) {
            match msg.view() {
                gst::MessageView::Eos(_) if stop_deadline.is_some() => return Outcome::Stopped,
                gst::MessageView::Eos(_) => return Outcome::Eos,
                gst::MessageView::Error(e) => return Outcome::Error(common::best_error(&bus, e)),
                gst::MessageView::Latency(_) => {
                    let _ = a.pipeline.recalculate_latency();
                }
                gst::MessageView::StateChanged(s)
                    if s.current() == gst::State::Playing && msg.src() == Some(a.pipeline.upcast_ref()) =>
                {
                    stream.update(|s| {
                        if s.state != State::Stopping {
                            s.state = State::Running;
                            s.error = None;
                        }
                    });
                }
                _ => {}
            }
        }
        sampler.sample(stream, &a.element, before);
    }
}

/// Samples the element's figures into the stream's status.
struct Sampler {
    last: Option<(Instant, u64)>,
}

impl Sampler {
    fn new() -> Sampler {
        Sampler { last: None }
    }

    fn sample(&mut self, stream: &Stream, element: &gst::Element, (frames_before, drops_before): (u64, u64)) {
        let now = Instant::now();
        if self.last.is_some_and(|(t, _)| now - t < SAMPLE_EVERY) {
            return;
        }
        let stats = element.property::<gst::Structure>("stats");
        let u = |f: &str| stats.get::<u64>(f).unwrap_or(0);
        let x = |f: &str| stats.get::<f64>(f).unwrap_or(0.0);
        let frames = u("processed");
        let fps = match self.last {
            Some((t, f)) => frames.saturating_sub(f) as f64 / (now - t).as_secs_f64().max(1e-3),
            None => 0.0,
        };
        self.last = Some((now, frames));
        let engine = (u("batches") > 0).then(|| EngineFigures {
            mean_batch_frames: x("mean-batch-frames"),
            busy: x("busy"),
            streams: u("engine-streams"),
        });
        stream.update(|s| {
            s.frames = frames_before + frames;
            s.drops = drops_before + u("dropped");
            s.fps = fps;
            s.latency_ms = x("mean-latency-ms");
            if engine.is_some() {
                s.engine = engine;
            }
        });
    }
}
