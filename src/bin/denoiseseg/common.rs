//! What every command shares: finding the plugin and the shipped models, the element's
//! options, running a pipeline to its end with progress and Ctrl-C, and pairing frames
//! from several appsinks by timestamp.
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use gst::glib;
use gst::prelude::*;
use gst_video::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

/// The shipped sample clip, relative to the models folder.
pub const SAMPLE_CLIP: &str = "sample/street.mp4";
/// Its label maps (GRAY8 train ids, FFV1), relative to the models folder.
pub const SAMPLE_LABELS: &str = "sample/street-labels.mkv";
/// The highest H.264 bitrate x264enc takes, in kbit/s (its `bitrate` property's range).
pub const MAX_H264_KBPS: i64 = 2_048_000;

/// Detail that only `-v` shows: GStreamer's debug text of an error and the element it
/// came from. It sits at the end of an error's chain of causes.
#[derive(Debug)]
pub struct Detail(pub String);

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Detail {}

/// An error as one line: the message and each of its causes (anyhow's context chain),
/// joined by ": ", each on one line, without the [`Detail`] that `-v` adds; a cause
/// whose text the line already holds is not repeated.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().filter(|c| !c.is::<Detail>()) {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The [`Detail`] of an error, if it carries one, for `-v`.
pub fn error_detail(e: &anyhow::Error) -> Option<String> {
    e.chain().find(|c| c.is::<Detail>()).map(ToString::to_string)
}

/// The folder of the running executable.
fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe().ok()?.parent().map(Path::to_path_buf)
}

/// Initializes GStreamer and makes sure the `denoiseseg` plugin is loaded: the one
/// beside the executable first (both land in target/<profile>/), then whatever
/// GST_PLUGIN_PATH and the system registry give.
pub fn init_gstreamer() -> Result<()> {
    gst::init().context("cannot initialize GStreamer")?;
    if let Some(dir) = exe_dir() {
        let so = dir.join("libgstdenoiseseg.so");
        if so.is_file() && gst::ElementFactory::find("denoiseseg").is_none() {
            gst::Plugin::load_file(&so).with_context(|| format!("cannot load the plugin {}", so.display()))?;
        }
    }
    if gst::ElementFactory::find("denoiseseg").is_none() {
        bail!(
            "the denoiseseg GStreamer plugin was found neither beside this program nor in GST_PLUGIN_PATH; \
             run `make build` (it lands in target/release/libgstdenoiseseg.so)"
        );
    }
    Ok(())
}

/// The folder with the shipped models: $DENOISESEG_MODEL_DIR, the source tree's models/
/// seen from target/<profile>/, or the source tree the app was built from (the
/// engine's `model::models_dir`, seen from this program's folder).
pub fn models_dir() -> PathBuf {
    denoiseseg::model::models_dir(exe_dir().as_deref())
}

/// A model path given by the user, or the shipped default.
pub fn resolve_model(model: Option<&Path>) -> Result<PathBuf> {
    let path = match model {
        Some(p) => p.to_path_buf(),
        None => denoiseseg::model::default_model_path(exe_dir().as_deref()),
    };
    if !path.is_file() {
        bail!("no model at {}", path.display());
    }
    Ok(path)
}

/// Quotes a value for a gst-launch pipeline description.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The `denoiseseg` element's options, shared by run, demo, eval and bench.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ElementOpts {
    /// ONNX model with its .toml sidecar beside it [default: the shipped denoiseseg-sdb-small.onnx]
    #[arg(long, value_name = "FILE.onnx")]
    pub model: Option<PathBuf>,
    /// Property preset (TOML, see configs/), applied before the other options
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Execution provider: auto, tensorrt, cuda or cpu
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// CUDA device index for tensorrt and cuda
    #[arg(long, value_name = "N")]
    pub device_id: Option<u32>,
    /// TensorRT half precision (true/false)
    #[arg(long, value_name = "BOOL")]
    pub fp16: Option<bool>,
    /// Folder for TensorRT engine and timing caches
    #[arg(long, value_name = "DIR")]
    pub engine_cache_dir: Option<PathBuf>,
    /// Path of libonnxruntime.so.1
    #[arg(long, value_name = "FILE")]
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (0 = one per core)
    #[arg(long, value_name = "N")]
    pub inference_threads: Option<u32>,
    /// Frames per inference call (1-64)
    #[arg(long, value_name = "N")]
    pub batch_size: Option<u32>,
    /// Longest wait for a batch to fill, in milliseconds
    #[arg(long, value_name = "MS")]
    pub batch_timeout: Option<u32>,
    /// Most frames inside the element at once
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u32>,
    /// Pre- and post-processing threads, each
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Noise sigma in 8-bit units fed to the model; -1 estimates it per frame
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true)]
    pub noise_level: Option<f64>,
    /// Drop the oldest waiting frame instead of blocking the source; `run` sets it on
    /// live inputs (cameras, rtsp://, udp://, srt://, rtmp://) unless told otherwise
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub leaky: Option<bool>,
    /// Never drop frames, also on live inputs: queue them (same as --leaky=false)
    #[arg(long, conflicts_with = "leaky")]
    pub no_leaky: bool,
    /// Opacity of the class colours in overlay views (0-1)
    #[arg(long, value_name = "A")]
    pub overlay_alpha: Option<f64>,
    /// Any other element property, as NAME=VALUE (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

impl ElementOpts {
    /// The model these options run: `--model`, else the preset's `model`, else the
    /// shipped default.
    pub fn model_path(&self) -> Result<PathBuf> {
        if self.model.is_none() {
            if let Some(path) = &self.config {
                let preset = denoiseseg::config::load_properties(path)?;
                if let Some((_, model)) = preset.iter().rev().find(|(name, _)| name == "model") {
                    return resolve_model(Some(Path::new(model))).with_context(|| format!("config {}", path.display()));
                }
            }
        }
        resolve_model(self.model.as_deref())
    }

    /// The (property, value) pairs these options set, in the order they apply, after
    /// the preset's (see [`ElementOpts::apply`]).
    pub fn properties(&self) -> Result<Vec<(String, String)>> {
        let mut p: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| p.push((k.to_string(), v));
        put("model", self.model_path()?.display().to_string());
        if let Some(v) = &self.provider {
            put("execution-provider", v.clone());
        }
        if let Some(v) = self.device_id {
            put("device-id", v.to_string());
        }
        if let Some(v) = self.fp16 {
            put("fp16", v.to_string());
        }
        if let Some(v) = &self.engine_cache_dir {
            put("engine-cache-dir", v.display().to_string());
        }
        if let Some(v) = &self.ort_library {
            put("ort-library", v.display().to_string());
        }
        if let Some(v) = self.inference_threads {
            put("inference-threads", v.to_string());
        }
        if let Some(v) = self.batch_size {
            put("batch-size", v.to_string());
        }
        if let Some(v) = self.batch_timeout {
            put("batch-timeout", v.to_string());
        }
        if let Some(v) = self.max_in_flight {
            put("max-in-flight", v.to_string());
        }
        if let Some(v) = self.workers {
            put("workers", v.to_string());
        }
        if let Some(v) = self.noise_level {
            put("noise-level", v.to_string());
        }
        if let Some(v) = self.leaky_choice() {
            put("leaky", v.to_string());
        }
        if let Some(v) = self.overlay_alpha {
            put("overlay-alpha", v.to_string());
        }
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--set {kv}: expected NAME=VALUE"))?;
            let k = k.trim();
            // The app reads the model's classes and applies the preset itself: these
            // two go through their own options.
            if let Some(option) = ["model", "config"].into_iter().find(|o| *o == k) {
                bail!("--set {kv}: give the {option} with --{option}");
            }
            put(k, v.trim().to_string());
        }
        Ok(p)
    }

    /// Whether the user chose leaky or not (--leaky[=BOOL], --no-leaky).
    pub fn leaky_choice(&self) -> Option<bool> {
        if self.no_leaky {
            Some(false)
        } else {
            self.leaky
        }
    }

    /// Applies the preset, then the options, to a `denoiseseg` element in the NULL
    /// state, and checks the settings that only fail together. A bad name, value or
    /// combination is a one-line error here, before any pipeline starts: the element
    /// would otherwise refuse to start (an error, the pipeline left half-started) or
    /// skip a preset entry with a warning.
    pub fn apply(&self, element: &gst::Element) -> Result<()> {
        if let Some(path) = &self.config {
            // The app applies the preset itself (as the element's `config` would) so
            // that a bad entry is an error that names the file.
            let preset = denoiseseg::config::load_properties(path)?;
            for (name, value) in preset {
                if name == "config" {
                    bail!("config {}: a preset cannot load another preset", path.display());
                }
                set_property_checked(element, &name, &value).with_context(|| format!("config {}", path.display()))?;
            }
        }
        for (name, value) in self.properties()? {
            set_property_checked(element, &name, &value)?;
        }
        let batch = element.property::<u32>("batch-size");
        let in_flight = element.property::<u32>("max-in-flight");
        if in_flight < batch {
            bail!(
                "max-in-flight {in_flight} is less than batch-size {batch}: a batch could never fill \
                 (give --max-in-flight {batch} or more, or a smaller --batch-size)"
            );
        }
        Ok(())
    }

    /// Checks the options on a scratch element (see [`ElementOpts::apply`]), for a
    /// command that wants them checked before it builds its pipeline, and returns it:
    /// its properties are the settings the options give.
    pub fn check(&self) -> Result<gst::Element> {
        let scratch = scratch_element()?;
        self.apply(&scratch)?;
        Ok(scratch)
    }
}

/// A `denoiseseg` element outside any pipeline, to check settings on.
pub fn scratch_element() -> Result<gst::Element> {
    gst::ElementFactory::make("denoiseseg")
        .build()
        .context("cannot create the denoiseseg element")
}

/// Sets a property from text after checking that it exists, is writable, parses and
/// lies in range (glib would panic on an out-of-range value).
pub fn set_property_checked(element: &gst::Element, name: &str, value: &str) -> Result<()> {
    let factory = element.factory().map(|f| f.name().to_string()).unwrap_or_default();
    let pspec = element
        .find_property(name)
        .ok_or_else(|| anyhow!("{factory} has no property '{name}' (see gst-inspect-1.0 {factory})"))?;
    if !pspec.flags().contains(glib::ParamFlags::WRITABLE) {
        bail!("property '{name}' of {factory} is read-only");
    }
    let v = glib::Value::deserialize(value, pspec.value_type())
        .map_err(|_| anyhow!("'{value}' is not a valid value for {name} ({})", pspec.value_type()))?;
    let range = if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt>() {
        let x = v.get::<u32>()?;
        (x < p.minimum() || x > p.maximum()).then(|| format!("{}..={}", p.minimum(), p.maximum()))
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecInt>() {
        let x = v.get::<i32>()?;
        (x < p.minimum() || x > p.maximum()).then(|| format!("{}..={}", p.minimum(), p.maximum()))
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt64>() {
        let x = v.get::<u64>()?;
        (x < p.minimum() || x > p.maximum()).then(|| format!("{}..={}", p.minimum(), p.maximum()))
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecDouble>() {
        let x = v.get::<f64>()?;
        (!(p.minimum()..=p.maximum()).contains(&x)).then(|| format!("{}..={}", p.minimum(), p.maximum()))
    } else {
        None
    };
    if let Some(range) = range {
        bail!("{name} = {value} is out of range {range}");
    }
    element.set_property_from_value(name, &v);
    Ok(())
}

/// Ctrl-C: the first press asks the pipeline to finish (EOS, so files are finalized),
/// the second aborts.
static INTERRUPTS: AtomicU32 = AtomicU32::new(0);

pub fn install_ctrl_c() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            let n = INTERRUPTS.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 1 {
                eprintln!("\ninterrupted: finishing the stream (Ctrl-C again to abort)");
            }
        });
    });
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
    /// One file per frame: nothing to finalize or remove.
    pattern: bool,
    frames: Arc<AtomicU64>,
}

impl OutputFile {
    /// Counts the frames that reach `writer` (an element of `pipeline`) on their way
    /// into `path`.
    pub fn watch(pipeline: &gst::Pipeline, writer: &str, path: &Path, pattern: bool) -> Result<OutputFile> {
        let writer = pipeline
            .by_name(writer)
            .ok_or_else(|| anyhow!("no element {writer} in the pipeline"))?;
        let frames = Arc::new(AtomicU64::new(0));
        for pad in writer.sink_pads() {
            let frames = frames.clone();
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                frames.fetch_add(1, Ordering::Relaxed);
                gst::PadProbeReturn::Ok
            });
        }
        Ok(OutputFile {
            path: path.to_path_buf(),
            pattern,
            frames,
        })
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// After the pipeline stopped: removes the file when it holds no frame or was not
    /// finalized (a muxer's headers alone do not play), and says what became of it.
    pub fn conclude(&self, ending: Ending) -> String {
        let (path, frames) = (self.path.display(), self.frames());
        let unfinished = ending == Ending::BeforeFirstFrame;
        if (frames == 0 || unfinished) && !self.pattern {
            let removed = std::fs::remove_file(&self.path).is_ok();
            return format!("{path}: no frame written{}", if removed { " (removed)" } else { "" });
        }
        match ending {
            Ending::Aborted if !self.pattern => format!("{path}: {frames} frames, not finalized (may not play)"),
            _ => format!("wrote {path} ({frames} frames)"),
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

/// The frames the element gave so far.
fn frames_of(element: &gst::Element) -> u64 {
    element.property::<u64>("frames-processed")
}

/// Runs `pipeline` to its end: EOS, an error (returned with GStreamer's detail as
/// context for `-v`), or Ctrl-C (see [`Ending`]). `element` is the denoiseseg
/// element: its frames tell the progress line, and whether Ctrl-C has anything to
/// finalize.
pub fn run_pipeline(pipeline: &gst::Pipeline, element: &gst::Element, progress: Progress) -> Result<Ending> {
    install_ctrl_c();
    let ending = drive(pipeline, element, progress);
    // However it ended, even when it never started (an element that refused its
    // settings, a file that cannot be opened), the pipeline goes back to NULL: that
    // closes the files, and GStreamer prints CRITICAL blocks for elements disposed
    // in any other state.
    let stopped = pipeline.set_state(gst::State::Null);
    let ending = ending?;
    stopped.context("cannot stop the pipeline")?;
    Ok(ending)
}

fn drive(pipeline: &gst::Pipeline, element: &gst::Element, progress: Progress) -> Result<Ending> {
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
                MessageView::Error(e) => {
                    bar.finish_and_clear();
                    // A source's "internal data stream error" often follows the real
                    // cause (connection refused, no such host): prefer that one.
                    let mut best = error_of(e);
                    if e.error().matches(gst::StreamError::Failed) {
                        while let Some(m) = bus.timed_pop_filtered(
                            gst::ClockTime::from_mseconds(200),
                            &[gst::MessageType::Error, gst::MessageType::Warning],
                        ) {
                            match m.view() {
                                MessageView::Error(e2) if !e2.error().matches(gst::StreamError::Failed) => {
                                    best = error_of(e2);
                                    break;
                                }
                                MessageView::Warning(w) => {
                                    best = best.context(format!("{}", w.error()));
                                    break;
                                }
                                _ => {}
                            }
                        }
                    }
                    return Err(best);
                }
                // As gst-launch does: a sink that renders in time needs the new figure
                // when an element's latency grows (denoiseseg posts it as it measures).
                MessageView::Latency(_) => {
                    let _ = pipeline.recalculate_latency();
                }
                MessageView::Warning(w) => {
                    bar.suspend(|| eprintln!("warning: {}", w.error()));
                }
                _ => {}
            }
        }
        match interrupts() {
            0 => {}
            1 if !sent_eos && frames_of(element) == 0 => break Ending::BeforeFirstFrame,
            1 if !sent_eos => {
                sent_eos = true;
                pipeline.send_event(gst::event::Eos::new());
            }
            1 => {}
            _ => break Ending::Aborted,
        }
        let frames = frames_of(element);
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
                let dropped = element.property::<u64>("frames-dropped");
                let latency = element.property::<f64>("mean-latency");
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

/// A GStreamer error message as one line: the message and the element's name, then
/// the reason when the debug text gives one after its source location ("Failed to
/// connect."); the whole debug text is its [`Detail`].
pub fn error_of(e: &gst::message::Error) -> anyhow::Error {
    let (name, path) = e
        .src()
        .map(|s| (s.name().to_string(), s.path_string().to_string()))
        .unwrap_or_else(|| ("pipeline".into(), "pipeline".into()));
    let debug = e.debug().map(|d| d.to_string()).unwrap_or_default();
    let message = format!("{} ({name})", e.error().to_string().trim_end_matches('.'));
    let detail = anyhow::Error::new(Detail(format!("{debug}\n(from {path})")));
    // "file.c(123): function (): /GstPipeline:pipeline0/...:\nthe reason"
    match debug.split_once(":\n").map(|(_, reason)| reason.trim()) {
        Some(reason) if !reason.is_empty() => detail.context(reason.to_string()).context(message),
        _ => detail.context(message),
    }
}

fn first_error(bus: &gst::Bus) -> Option<anyhow::Error> {
    while let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(500)) {
        if let gst::MessageView::Error(e) = msg.view() {
            return Some(error_of(e));
        }
    }
    None
}

/// An interleaved 8-bit RGB frame copied out of a sample, tightly packed.
#[derive(Clone, Debug)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
    /// The class map from the denoiseseg meta, tightly packed, when the buffer has one.
    pub mask: Option<Vec<u8>>,
}

/// Copies an RGB (or GRAY8) sample into a packed frame, with the class-map meta if present.
pub fn frame_of(sample: &gst::Sample) -> Result<RgbFrame> {
    let buffer = sample.buffer().ok_or_else(|| anyhow!("sample without buffer"))?;
    let caps = sample.caps().ok_or_else(|| anyhow!("sample without caps"))?;
    let info = gst_video::VideoInfo::from_caps(caps).context("sample caps")?;
    let frame =
        gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).map_err(|_| anyhow!("cannot map a frame"))?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let bpp = match info.format() {
        gst_video::VideoFormat::Rgb => 3,
        gst_video::VideoFormat::Gray8 => 1,
        f => bail!("expected RGB or GRAY8 frames, got {f:?}"),
    };
    let stride = frame.plane_stride()[0] as usize;
    let plane = frame.plane_data(0).map_err(|_| anyhow!("cannot read a plane"))?;
    let mut data = Vec::with_capacity(w * h * bpp);
    for y in 0..h {
        data.extend_from_slice(&plane[y * stride..y * stride + w * bpp]);
    }
    let mask = gst::meta::CustomMeta::from_buffer(buffer, "DenoisesegMaskMeta")
        .ok()
        .and_then(|m| {
            let s = m.structure();
            let mb = s.get::<gst::Buffer>("mask").ok()?;
            let ms = s.get::<u32>("stride").ok()? as usize;
            let map = mb.map_readable().ok()?;
            let mut out = Vec::with_capacity(w * h);
            for y in 0..h {
                out.extend_from_slice(map.get(y * ms..y * ms + w)?);
            }
            Some(out)
        });
    Ok(RgbFrame {
        width: w,
        height: h,
        data,
        mask,
    })
}

/// A sample's running time in nanoseconds (its timestamp on the segment it came in:
/// an encoder such as x264enc shifts timestamps and segments by 1000 hours, so the
/// raw timestamps of branches with and without one differ); 0 without a timestamp.
fn running_time_of(sample: &gst::Sample) -> u64 {
    let pts = sample.buffer().and_then(|b| b.pts());
    let running = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
        .zip(pts)
        .and_then(|(seg, pts)| seg.to_running_time(pts));
    running.or(pts).map(|t| t.nseconds()).unwrap_or(0)
}

/// Pairs frames from several appsinks by running time and hands each complete set, in
/// time order, to a callback. Frames only some sinks saw (a leaky drop) are counted
/// and discarded at the end.
pub struct FrameSets {
    inner: Arc<Mutex<SetsInner>>,
}

struct SetsInner {
    sinks: usize,
    pending: BTreeMap<u64, Vec<Option<RgbFrame>>>,
    error: Option<String>,
    on_set: Box<dyn FnMut(u64, Vec<RgbFrame>) + Send>,
}

impl FrameSets {
    /// Connects to `sinks` (appsinks by name in `pipeline`); `on_set(running_time, frames)`
    /// gets the frames in the order of `sinks`.
    pub fn connect(
        pipeline: &gst::Pipeline,
        sinks: &[&str],
        on_set: impl FnMut(u64, Vec<RgbFrame>) + Send + 'static,
    ) -> Result<FrameSets> {
        let inner = Arc::new(Mutex::new(SetsInner {
            sinks: sinks.len(),
            pending: BTreeMap::new(),
            error: None,
            on_set: Box::new(on_set),
        }));
        for (i, name) in sinks.iter().enumerate() {
            let sink = pipeline
                .by_name(name)
                .ok_or_else(|| anyhow!("no element {name} in the pipeline"))?
                .downcast::<gst_app::AppSink>()
                .map_err(|_| anyhow!("{name} is not an appsink"))?;
            let inner = inner.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |s| {
                        let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
                        let pts = running_time_of(&sample);
                        match frame_of(&sample) {
                            Ok(f) => g.add(i, pts, f),
                            Err(e) => {
                                g.error.get_or_insert(e.to_string());
                            }
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        Ok(FrameSets { inner })
    }

    /// Frames that never completed a set, and the first frame error, if any.
    pub fn finish(&self) -> Result<usize> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = &g.error {
            bail!("{e}");
        }
        Ok(g.pending.len())
    }
}

impl SetsInner {
    fn add(&mut self, i: usize, pts: u64, f: RgbFrame) {
        let n = self.sinks;
        let slot = self.pending.entry(pts).or_insert_with(|| vec![None; n]);
        slot[i] = Some(f);
        if slot.iter().all(Option::is_some) {
            let set = self
                .pending
                .remove(&pts)
                .expect("present")
                .into_iter()
                .flatten()
                .collect();
            (self.on_set)(pts, set);
        }
    }
}

/// Parses WIDTHxHEIGHT (each 8..=8192), as the commands' size options take it.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or("expected WIDTHxHEIGHT, e.g. 1024x512")?;
    let w: u32 = w.trim().parse().map_err(|_| format!("bad width '{w}'"))?;
    let h: u32 = h.trim().parse().map_err(|_| format!("bad height '{h}'"))?;
    if !(8..=8192).contains(&w) || !(8..=8192).contains(&h) {
        return Err(format!("{w}x{h} is outside 8x8 .. 8192x8192"));
    }
    Ok((w, h))
}

/// Checks a file that a command will write, before anything runs: its folder must
/// exist (nothing is created, as ffmpeg does) and be writable, and the path must not
/// be a folder. `path` may be a pattern (masks/%05d.png): its folder is checked the
/// same way. Returns the path with its folder resolved (symbolic links, `.` and `..`),
/// to compare outputs with [`check_distinct`].
pub fn check_output(path: &Path) -> Result<PathBuf> {
    let shown = path.display();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        bail!("cannot write {shown}: it names no file");
    };
    if !dir.exists() {
        bail!("cannot write {shown}: folder {} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!("cannot write {shown}: {} is not a folder", dir.display());
    }
    if path.is_dir() {
        bail!("cannot write {shown}: it is a folder");
    }
    if !writable(dir) {
        bail!("cannot write {shown}: folder {} is not writable", dir.display());
    }
    let resolved = match path.canonicalize() {
        Ok(p) => p,
        Err(_) => dir
            .canonicalize()
            .with_context(|| format!("cannot write {shown}"))?
            .join(name),
    };
    Ok(resolved)
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(dir.as_os_str().as_bytes())
        // SAFETY: access(2) reads the NUL-terminated path and nothing else.
        .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
}

/// Fails when two of `files` (what names each, e.g. "-o a.mkv"; its resolved path, from
/// [`check_output`] or canonicalize) are one file: a pipeline writing one file twice,
/// or over its own input, leaves it corrupt.
pub fn check_distinct(files: &[(String, PathBuf)]) -> Result<()> {
    for (i, (a, pa)) in files.iter().enumerate() {
        if let Some((b, _)) = files[i + 1..].iter().find(|(_, pb)| pb == pa) {
            bail!("{a} and {b} are the same file: give each its own file");
        }
    }
    Ok(())
}

/// Frames a branch queue holds: enough for each branch to run in its own thread at
/// its own pace, few enough that the model paces the pipeline.
pub const QUEUE_FRAMES: u32 = 4;

/// The queue that starts a branch (see [`QUEUE_FRAMES`]).
pub fn queue() -> String {
    format!("queue max-size-buffers={QUEUE_FRAMES}")
}

/// A sink that writes a file, for the end of a gst-launch description.
///
/// It takes no part in preroll (`async=false`): it has nothing to render in time, and
/// an encoder keeps frames before its first output (x264enc's lookahead and frame
/// threads hold tens of frames, more with more cores). A file sink that waited for
/// that frame would hold the pipeline in PAUSED while every other sink (appsinks, a
/// second file, the screen) blocked its branch on its own first frame; their queues
/// would fill and stop the tee feeding them all, and the pipeline would never start.
pub fn file_sink(path: &Path) -> String {
    format!("filesink location={} async=false", quote(&path.display().to_string()))
}

/// The name of the muxer in [`h264_file`], to watch it with [`OutputFile::watch`].
pub const H264_MUX: &str = "h264_mux";

/// An H.264 file output from raw video: `videoconvert ! x264enc ! h264parse ! MUX !`
/// [`file_sink`], the muxer named [`H264_MUX`]. `low_latency` (live inputs) turns
/// off x264enc's lookahead and B-frames.
pub fn h264_file(path: &Path, mux: &str, bitrate: u32, low_latency: bool) -> String {
    format!(
        "videoconvert ! video/x-raw,format=I420 ! x264enc bitrate={bitrate} speed-preset=veryfast{} \
         ! h264parse ! {mux} name={H264_MUX} ! {}",
        if low_latency { " tune=zerolatency" } else { "" },
        file_sink(path)
    )
}

/// H.264 in 4:2:0 (what the file outputs encode) needs an even width and height: a
/// size the user chose is checked here rather than failing in x264enc.
pub fn check_h264_size(option: &str, (w, h): (u32, u32)) -> Result<()> {
    if w % 2 == 1 || h % 2 == 1 {
        bail!("{option} {w}x{h}: the H.264 output needs an even width and height");
    }
    Ok(())
}

/// Checks a `--json FILE` before the command runs (see [`check_output`]); `-` is
/// standard output.
pub fn check_report_path(json: Option<&Path>) -> Result<()> {
    match json {
        Some(path) if path != Path::new("-") => check_output(path).map(drop),
        _ => Ok(()),
    }
}

/// Prints a command's table and JSON report: `--json -` puts the JSON alone on
/// standard output (the table goes to standard error), `--json FILE` writes it there.
pub fn emit_report(table: &str, report: &serde_json::Value, json: Option<&Path>) -> Result<()> {
    let table = table.trim_end();
    match json {
        Some(path) if path == Path::new("-") => {
            eprintln!("{table}");
            println!("{}", serde_json::to_string_pretty(report)?);
        }
        Some(path) => {
            println!("{table}");
            std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => println!("{table}"),
    }
    Ok(())
}

/// Seconds as a duration for display.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_within_range() {
        assert_eq!(parse_size("1024x512"), Ok((1024, 512)));
        assert_eq!(parse_size("64X32"), Ok((64, 32)));
        assert!(parse_size("1024").is_err());
        assert!(parse_size("0x512").unwrap_err().contains("outside 8x8"));
        assert!(parse_size("ax5").unwrap_err().contains("bad width"));
    }

    #[test]
    fn errors_print_their_causes_on_one_line_and_keep_the_detail_for_v() {
        let e = anyhow::Error::new(Detail("gst.c(12): f ()\n(from /pipeline0/d)".into()))
            .context("no such\nprovider")
            .context("cannot start");
        assert_eq!(error_line(&e), "cannot start: no such provider");
        assert_eq!(
            error_detail(&e).as_deref(),
            Some("gst.c(12): f ()\n(from /pipeline0/d)")
        );
        // A cause already quoted by its context is not repeated.
        let e = anyhow!("disk full").context("cannot write x: disk full");
        assert_eq!(error_line(&e), "cannot write x: disk full");
        assert!(error_detail(&e).is_none());
    }

    #[test]
    fn launch_values_are_quoted() {
        assert_eq!(quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
