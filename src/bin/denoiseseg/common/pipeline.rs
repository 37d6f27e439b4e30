//! Running a pipeline to its end: Ctrl-C, progress, the output files it writes, and
//! GStreamer errors as one line.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use gst::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

use super::setup::Detail;

/// Ctrl-C, SIGTERM (`timeout`, `kill`, systemd, `docker stop`) and SIGHUP (a closed
/// terminal): the first asks the pipeline to finish (EOS, so files are finalized), or,
/// for a measurement ([`stop_at_once`]), to stop; the second aborts.
static INTERRUPTS: AtomicU32 = AtomicU32::new(0);
/// Set by [`stop_at_once`].
static STOP_AT_ONCE: AtomicBool = AtomicBool::new(false);

pub fn install_ctrl_c() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            let n = INTERRUPTS.fetch_add(1, Ordering::SeqCst) + 1;
            let say = match (n, STOP_AT_ONCE.load(Ordering::SeqCst)) {
                (1, false) => "interrupted: finishing the stream (Ctrl-C again to abort)",
                (1, true) => "interrupted: stopping",
                _ => return,
            };
            // Not eprintln!: after SIGHUP the terminal may be gone, and that panics.
            let _ = writeln!(std::io::stderr(), "\n{say}");
        });
    });
}

/// For commands that write no media (`eval`, `bench`): the first interrupt stops the
/// pipeline at once instead of draining what is queued through to EOS. Installs the
/// handler, so that work outside a pipeline can check [`interrupted`].
pub fn stop_at_once() {
    STOP_AT_ONCE.store(true, Ordering::SeqCst);
    install_ctrl_c();
}

/// Whether an interrupt came.
pub fn interrupted() -> bool {
    interrupts() > 0
}

fn interrupts() -> u32 {
    INTERRUPTS.load(Ordering::SeqCst)
}

/// How a pipeline ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Eos,
    /// Ctrl-C, then EOS through every sink: outputs are finalized.
    Interrupted,
    /// Ctrl-C before the element gave its first frame: stopped at once, as there is
    /// nothing to finalize (and a source with no data yet, a camera or a stream still
    /// connecting, may never pass EOS on).
    BeforeFirstFrame,
    /// Ctrl-C twice: stopped without finishing.
    Aborted,
}

/// What a run says when it stopped before the first frame.
pub const STOPPED_EARLY: &str = "stopped before the first frame: no output written";

/// A file (or PNG pattern) that a pipeline writes, with the frames that reached the
/// element writing it (its muxer, or multifilesink), counted as they pass.
pub struct OutputFile {
    path: PathBuf,
    frames: Arc<AtomicU64>,
    /// Where the file is written until its first frame ([`super::partial_path`]); none
    /// for a pattern (one file per frame: nothing to finalize or remove).
    partial: Option<PathBuf>,
    /// Whether the file was moved from its partial path onto its path at the first
    /// frame (an error says why not); None before the first frame.
    moved: Arc<Mutex<Option<Result<(), String>>>>,
    /// Set by [`OutputFile::conclude`]; an output dropped without it (the run ended with
    /// an error) is concluded then.
    concluded: AtomicBool,
}

impl OutputFile {
    /// Counts the frames that reach `writer` (an element of `pipeline`) on their way
    /// into `path`.
    pub fn watch(pipeline: &gst::Pipeline, writer: &str, path: &Path, pattern: bool) -> Result<OutputFile> {
        let writer = pipeline
            .by_name(writer)
            .ok_or_else(|| anyhow!("no element {writer} in the pipeline"))?;
        let frames = Arc::new(AtomicU64::new(0));
        let moved = Arc::new(Mutex::new(None));
        // The file is written at its partial path (see `file_sink`) until the first frame
        // comes, then moved onto its path: from then on it grows there (the sink's open
        // file moves with it), and a file that was there is replaced only now.
        let paths = (!pattern).then(|| {
            (
                super::partial_path(path),
                super::write_target(path).map_err(|e| e.to_string()),
            )
        });
        if let Some((partial, _)) = &paths {
            // The file sink after the writer (the muxer) writes the partial file.
            let sink = writer
                .static_pad("src")
                .and_then(|p| p.peer())
                .and_then(|p| p.parent_element())
                .filter(|e| e.factory().is_some_and(|f| f.name() == "filesink"))
                .ok_or_else(|| anyhow!("no file sink after {} in the pipeline", writer.name()))?;
            sink.set_property("location", partial.display().to_string());
        }
        for pad in writer.sink_pads() {
            let (frames, moved, paths) = (frames.clone(), moved.clone(), paths.clone());
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                if frames.fetch_add(1, Ordering::Relaxed) == 0 {
                    if let Some((partial, target)) = &paths {
                        let result = match target {
                            Ok(target) => std::fs::rename(partial, target).map_err(|e| e.to_string()),
                            Err(e) => Err(e.clone()),
                        };
                        *moved.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        Ok(OutputFile {
            path: path.to_path_buf(),
            frames,
            partial: paths.map(|(partial, _)| partial),
            moved,
            concluded: AtomicBool::new(false),
        })
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// After the pipeline stopped (in NULL, its files closed): says what became of the
    /// file. One that holds no frame, or that was not finalized before the first frame,
    /// is removed (a muxer's headers alone do not play); a file that was at its path
    /// before the run is left as it was unless a frame replaced it.
    pub fn conclude(&self, ending: Ending) -> String {
        self.concluded.store(true, Ordering::Relaxed);
        let (path, frames) = (self.path.display(), self.frames());
        let Some(partial) = &self.partial else {
            return match frames {
                0 => format!("{path}: no frame written"),
                _ => format!("wrote {path} ({frames} frames)"),
            };
        };
        let moved = self.moved.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if frames == 0 || ending == Ending::BeforeFirstFrame {
            let _ = std::fs::remove_file(partial);
            if let Some(Ok(())) = moved {
                let _ = std::fs::remove_file(&self.path);
                return format!("{path}: no frame written (removed)");
            }
            let kept = if self.path.exists() {
                " (the file there is left as it was)"
            } else {
                ""
            };
            return format!("{path}: no frame written{kept}");
        }
        if let Some(Err(e)) = moved {
            return format!(
                "{path}: {frames} frames written to {}, which could not be moved there: {e}",
                partial.display()
            );
        }
        match ending {
            Ending::Aborted => format!("{path}: {frames} frames, not finalized (may not play)"),
            _ => format!("wrote {path} ({frames} frames)"),
        }
    }
}

impl Drop for OutputFile {
    /// A run that ended with an error returns before it concludes its outputs: what
    /// was written is kept as [`OutputFile::conclude`] keeps it (the pipeline is in NULL
    /// by then, see [`run_streams_with`]).
    fn drop(&mut self) {
        if !self.concluded.load(Ordering::Relaxed) {
            let _ = self.conclude(Ending::Aborted);
        }
    }
}

/// Progress display while a pipeline runs.
pub enum Progress {
    None,
    /// A file: a bar over its duration.
    File,
    /// A live source: a spinner with live statistics.
    Live,
}

/// The frames the elements gave so far.
fn frames_of(elements: &[gst::Element]) -> u64 {
    elements.iter().map(|e| e.property::<u64>("frames-processed")).sum()
}

/// Runs `pipeline` to its end: EOS, an error (returned with GStreamer's detail as
/// context for `-v`), or Ctrl-C (see [`Ending`]). `element` is the denoiseseg
/// element: its frames tell the progress line, and whether Ctrl-C has anything to
/// finalize.
pub fn run_pipeline(pipeline: &gst::Pipeline, element: &gst::Element, progress: Progress) -> Result<Ending> {
    run_streams(pipeline, std::slice::from_ref(element), progress)
}

/// [`run_pipeline`] for a pipeline of several streams, each with its denoiseseg
/// element: the progress line sums their frames (and drops), and Ctrl-C has something
/// to finalize once any of them gave a frame.
pub fn run_streams(pipeline: &gst::Pipeline, elements: &[gst::Element], progress: Progress) -> Result<Ending> {
    run_streams_with(pipeline, elements, progress, &mut |_| OnError::End)
}

/// What to do with an error message while a pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The run ends with it.
    End,
    /// It was dealt with (one stream of several ended with it): the run goes on.
    GoOn,
}

/// [`run_streams`], with `on_message` told of each error message as it comes (the run
/// ends with the error unless it answers [`OnError::GoOn`]) and of each application
/// message (its answer is not asked for). It is called on the thread that called this
/// one, never on a streaming thread, so it may change the pipeline's state.
pub fn run_streams_with(
    pipeline: &gst::Pipeline,
    elements: &[gst::Element],
    progress: Progress,
    on_message: &mut dyn FnMut(&gst::Message) -> OnError,
) -> Result<Ending> {
    install_ctrl_c();
    let ending = drive(pipeline, elements, progress, on_message);
    // However it ended, even when it never started (an element that refused its
    // settings, a file that cannot be opened), the pipeline goes back to NULL: that
    // closes the files, and GStreamer prints CRITICAL blocks for elements disposed
    // in any other state.
    let stopped = pipeline.set_state(gst::State::Null);
    let ending = ending?;
    stopped.context("cannot stop the pipeline")?;
    Ok(ending)
}

fn drive(
    pipeline: &gst::Pipeline,
    elements: &[gst::Element],
    progress: Progress,
    on_message: &mut dyn FnMut(&gst::Message) -> OnError,
) -> Result<Ending> {
    let bus = pipeline.bus().expect("a pipeline has a bus");
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| first_error(&bus).unwrap_or_else(|| anyhow!("the pipeline refused to start")))?;
    let bar = match progress {
        Progress::None => ProgressBar::hidden(),
        Progress::File => {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {percent:>3}% {msg}  ETA {eta}")
                    .expect("valid template"),
            );
            b
        }
        Progress::Live => {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("valid template"));
            b
        }
    };
    let started = Instant::now();
    let mut sent_eos = false;
    let ending = loop {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            use gst::MessageView;
            match msg.view() {
                MessageView::Eos(_) => break if sent_eos { Ending::Interrupted } else { Ending::Eos },
                MessageView::Error(_) if on_message(&msg) == OnError::GoOn => {}
                MessageView::Error(e) => {
                    bar.finish_and_clear();
                    return Err(best_error(&bus, e));
                }
                // As gst-launch does: a sink that renders in time needs the new figure
                // when an element's latency grows (denoiseseg posts it as it measures).
                MessageView::Latency(_) => {
                    let _ = pipeline.recalculate_latency();
                }
                MessageView::Application(_) => {
                    on_message(&msg);
                }
                MessageView::Warning(w) => {
                    bar.suspend(|| eprintln!("warning: {}", w.error()));
                }
                _ => {}
            }
        }
        match interrupts() {
            0 => {}
            1 if !sent_eos && frames_of(elements) == 0 => break Ending::BeforeFirstFrame,
            1 if STOP_AT_ONCE.load(Ordering::SeqCst) => break Ending::Interrupted,
            1 if !sent_eos => {
                sent_eos = true;
                pipeline.send_event(gst::event::Eos::new());
            }
            1 => {}
            _ => break Ending::Aborted,
        }
        let frames = frames_of(elements);
        let fps = frames as f64 / started.elapsed().as_secs_f64().max(1e-3);
        match progress {
            Progress::None => {}
            Progress::File => {
                if let (Some(pos), Some(dur)) = (
                    pipeline.query_position::<gst::ClockTime>(),
                    pipeline.query_duration::<gst::ClockTime>(),
                ) {
                    bar.set_length(dur.mseconds().max(1));
                    bar.set_position(pos.mseconds().min(dur.mseconds()));
                }
                bar.set_message(format!("{frames} frames, {fps:.1} frames/s"));
            }
            Progress::Live => {
                let dropped: u64 = elements.iter().map(|e| e.property::<u64>("frames-dropped")).sum();
                // The slowest stream's.
                let latency = elements
                    .iter()
                    .map(|e| e.property::<f64>("mean-latency"))
                    .fold(0.0, f64::max);
                bar.set_message(format!(
                    "{frames} frames, {fps:.1} frames/s, {dropped} dropped, latency {latency:.0} ms"
                ));
                bar.tick();
            }
        }
    };
    bar.finish_and_clear();
    Ok(ending)
}

/// A GStreamer error message as one line: the message and the element's name (not a
/// denoiseseg element's, whose messages name the model or setting), then the reason
/// when the debug text gives one after its source location ("Failed to connect."); the
/// whole debug text is its [`Detail`].
pub fn error_of(e: &gst::message::Error) -> anyhow::Error {
    let (name, path) = e
        .src()
        .map(|s| (s.name().to_string(), s.path_string().to_string()))
        .unwrap_or_else(|| ("pipeline".into(), "pipeline".into()));
    let ours = e
        .src()
        .and_then(|s| s.downcast_ref::<gst::Element>())
        .and_then(|el| el.factory())
        .is_some_and(|f| f.name() == "denoiseseg");
    let debug = e.debug().map(|d| d.to_string()).unwrap_or_default();
    let text = e.error().to_string();
    let text = text.trim_end_matches('.');
    let message = if ours {
        text.to_string()
    } else {
        format!("{text} ({name})")
    };
    let detail = anyhow::Error::new(Detail(format!("{debug}\n(from {path})")));
    if let Some(reason) = matroska_caps_change(&debug) {
        return detail.context(reason).context(message);
    }
    // "file.c(123): function (): /GstPipeline:pipeline0/...:\nthe reason"
    match debug.split_once(":\n").map(|(_, reason)| reason.trim()) {
        Some(reason) if !reason.is_empty() => detail.context(reason.to_string()).context(message),
        _ => detail.context(message),
    }
}

/// matroskamux's refusal of new caps ("Caps changes are not supported by Matroska
/// Current: `CAPS` New: `CAPS`", a kilobyte of caps), said in a line: what changed and
/// what to do.
fn matroska_caps_change(debug: &str) -> Option<String> {
    let (_, rest) = debug.split_once("Caps changes are not supported by Matroska")?;
    let (current, new) = rest.split_once("New:")?;
    let size = |caps: &str| {
        let int = |field: &str| {
            let (_, v) = caps.split_once(&format!("{field}=(int)"))?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok()
        };
        Some((int("width")?, int("height")?))
    };
    let what = match (size(current), size(new)) {
        (Some((w0, h0)), Some((w1, h1))) if (w0, h0) != (w1, h1) => {
            format!("the frame size changed mid-stream, from {w0}x{h0} to {w1}x{h1}")
        }
        _ => "the video format changed mid-stream".to_string(),
    };
    Some(format!(
        "{what}, and Matroska (.mkv) cannot change it within a file: give --size WxH (every frame \
         scaled to it), or write .mp4 or a PNG pattern"
    ))
}

/// The error to report for `e`, an error message just popped from `bus`: a source's
/// "internal data stream error" often follows the real cause (connection refused, no
/// such host), so the next error or warning on the bus (within 200 ms) is preferred.
pub fn best_error(bus: &gst::Bus, e: &gst::message::Error) -> anyhow::Error {
    let mut best = error_of(e);
    if e.error().matches(gst::StreamError::Failed) {
        while let Some(m) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(200),
            &[gst::MessageType::Error, gst::MessageType::Warning],
        ) {
            match m.view() {
                gst::MessageView::Error(e2) if !e2.error().matches(gst::StreamError::Failed) => {
                    best = error_of(e2);
                    break;
                }
                gst::MessageView::Warning(w) => {
                    best = best.context(format!("{}", w.error()));
                    break;
                }
                _ => {}
            }
        }
    }
    best
}

/// The first error on `bus` within 500 ms of quiet, e.g. after a pipeline refused to
/// start.
pub fn first_error(bus: &gst::Bus) -> Option<anyhow::Error> {
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(500)) {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(error_of(e));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matroska_caps_changes_are_said_in_a_line() {
        let debug = "../gst/matroska/matroska-mux.c(1093): gst_matroska_mux_video_pad_setcaps (): \
             /GstPipeline:pipeline0/GstMatroskaMux:mask_writer:\nCaps changes are not supported by Matroska\n\
             Current: `video/x-ffv, ffversion=(int)1, width=(int)160, height=(int)120, framerate=(fraction)25/1`\n\
             New: `video/x-ffv, ffversion=(int)1, width=(int)120, height=(int)90, framerate=(fraction)25/1`";
        let said = matroska_caps_change(debug).unwrap();
        assert!(
            said.starts_with("the frame size changed mid-stream, from 160x120 to 120x90"),
            "{said}"
        );
        assert!(said.contains("--size"), "{said}");
        let format = debug
            .replace("height=(int)90", "height=(int)120")
            .replace("width=(int)120,", "width=(int)160,");
        assert!(matroska_caps_change(&format)
            .unwrap()
            .starts_with("the video format changed"));
        assert_eq!(matroska_caps_change("Could not link"), None);
    }
}
