//! `denoiseseg bench`: frames/s and latency of the element pipeline against a bare
//! ONNX Runtime loop on the same model, frames, batch and threads, in one run.
//!
//! The bare loop is the engine's [`runtime::bare_loop`]: the same session set-up and
//! [`OrtBackend`] the element runs, fed pre-made padded tensors, timing inference
//! only. The pipeline is `appsrc ! denoiseseg ! appsink`, fed the same frames as 8-bit
//! RGB buffers as fast as the source accepts them; the element does everything it
//! does on a real stream (conversion, noise estimate, inference, output frames and
//! class maps). Their ratio says how much the frame queue loses to the bare loop.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use gst::glib;
use gst::prelude::*;
use serde_json::json;

use denoiseseg::convert;
use denoiseseg::frame::{FrameLayout, PixelFormat};
use denoiseseg::model::{round_up, ModelSpec};
use denoiseseg::noise::{add_noise_interleaved, NoiseParams, SigmaEstimator};
use denoiseseg::runtime::{self, OrtBackend, Provider, SessionOptions};
use denoiseseg::tensors::Tensors;

use crate::common::{self, ElementOpts, Progress};

mod streams;

/// The timestamp step of the frames the element benchmarks push: 25 frames/s.
const FRAME_NS: u64 = 40_000_000;

/// Pushes `total` frames (cycling through `buffers`, timestamped `frame_ns` apart) into
/// `src` as fast as it accepts them, once the pipeline is PAUSED, then EOS; returns when
/// each frame was accepted (fewer when the pipeline stopped, none when it never paused
/// within two minutes).
fn spawn_pusher(
    src: gst_app::AppSrc,
    buffers: Vec<gst::Buffer>,
    total: usize,
    frame_ns: u64,
) -> std::thread::JoinHandle<Vec<Instant>> {
    std::thread::spawn(move || {
        let started = Instant::now();
        while src.current_state() < gst::State::Paused {
            if started.elapsed() > Duration::from_secs(120) {
                return Vec::new();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut pushed = Vec::with_capacity(total);
        for i in 0..total {
            let mut b = buffers[i % buffers.len()].copy();
            {
                let b = b.get_mut().expect("a fresh copy is writable");
                b.set_pts(gst::ClockTime::from_nseconds(i as u64 * frame_ns));
                b.set_duration(gst::ClockTime::from_nseconds(frame_ns));
            }
            if src.push_buffer(b).is_err() {
                return pushed;
            }
            pushed.push(Instant::now());
        }
        let _ = src.end_of_stream();
        pushed
    })
}

const EXAMPLES: &str = "\
Examples:
  denoiseseg bench                                       the shipped model at 1024x512, 60 frames, on the best provider
  denoiseseg bench --size 1024x512 --provider cpu --threads 2
  denoiseseg bench --provider tensorrt --batch-size 4 --frames 200 --json bench.json
  denoiseseg bench --model my.onnx --size 640x480 --json -     JSON on standard output, the table on standard error
  denoiseseg bench --streams 4 --size 512x256 --provider cuda --batch-size 4   one shared engine against 4 private ones

Both parts use the same model, frame size (padded to the model's size multiple), batch
size, execution provider and intra-op threads, and the same noisy frames (a fixed
street-like pattern plus seeded Gaussian noise). The latency percentiles are those of
a saturated pipeline: from the moment appsrc accepts a frame to its arrival at the
sink, so they include the time frames wait in the element's queue (max-in-flight).

--streams N (N > 1) runs N streams in one process instead of the bare loop: once on one
shared engine (model-instance-id=bench-shared: one session, one inference thread, each
batch of --batch-size frames filled from all streams) and once on N private engines (no
id: N sessions, each waiting for --batch-size frames of its own stream), alternated over
--repeat rounds. It reports aggregate frames/s (all streams' frames over the wall time),
per-stream frames/s and p50/p99 latency, mean-batch-frames and engine-streams from the
elements' stats, and shared / private. Without --threads, the shared session gets one
intra-op thread per core and each private session cores / N (at least 1). On a CPU the
N private sessions compete for the same cores, so the comparison is meaningful mainly
on a GPU.";

/// Distinct input frames, cycled.
const DISTINCT_FRAMES: usize = 4;
/// Seed of the input noise.
const NOISE_SEED: u64 = 0x00BE_4C4D;

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Frame size WIDTHxHEIGHT
    #[arg(long, value_name = "WxH", default_value = "1024x512")]
    size: String,
    /// Frames timed in each part, after the warm-up (rounded up to whole batches)
    #[arg(long, value_name = "N", default_value_t = 60)]
    frames: usize,
    /// Untimed frames first, in each part (session start, caches, allocations)
    #[arg(long, value_name = "N", default_value_t = 5)]
    warmup: usize,
    /// ONNX Runtime intra-op threads in both parts (the element's inference-threads; 0 = one per core)
    #[arg(long, value_name = "N")]
    threads: Option<u32>,
    /// Noise added to the input frames (sigma in 8-bit units)
    #[arg(long, value_name = "SIGMA", default_value_t = 25.0)]
    noise_sigma: f32,
    /// Rounds of (bare loop, pipeline), alternated; the figures are the medians (steadier on a busy machine)
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: usize,
    /// Streams in one process: N > 1 compares one shared engine (model-instance-id) with N private engines, instead of the bare loop
    #[arg(long, value_name = "N", default_value_t = 1)]
    streams: usize,
    /// Also write the results as JSON to FILE ('-': standard output, the table then goes to standard error)
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    #[command(flatten)]
    element: ElementOpts,
}

/// Parses "WIDTHxHEIGHT".
/// A deterministic street-like RGB frame (sky, buildings, road with lane marks, a few
/// cars), packed with GStreamer's default row stride; `shift` moves the scene.
fn pattern(layout: &FrameLayout, shift: usize) -> Vec<u8> {
    let (w, h, stride) = (layout.width, layout.height, layout.strides[0]);
    let mut data = vec![0u8; layout.size];
    let horizon = h * 2 / 5;
    for y in 0..h {
        for x in 0..w {
            let xs = x + shift * 7;
            let fy = y as f32 / h as f32;
            let rgb: [f32; 3] = if y < horizon {
                // Sky gradient, with building blocks rising into it.
                let block = (xs / (w / 8).max(1)) % 4;
                let top = horizon as f32 * (0.25 + 0.15 * block as f32);
                if (y as f32) > top {
                    let win = (xs / 6).is_multiple_of(3) && (y / 8).is_multiple_of(2);
                    let g = 60.0 + 25.0 * block as f32 + if win { 70.0 } else { 0.0 };
                    [g, g, g + 10.0]
                } else {
                    [70.0 + 60.0 * fy, 130.0 + 50.0 * fy, 180.0 + 40.0 * fy]
                }
            } else {
                let lane = (xs / 24).is_multiple_of(4) && (y - horizon) % 16 < 3 && x.abs_diff(w / 2) < w / 40 + 2;
                let car = (xs / (w / 5).max(1)) % 3 == 1 && y < horizon + (h - horizon) / 3;
                if lane {
                    [235.0, 235.0, 230.0]
                } else if car {
                    [20.0, 30.0, 140.0 + 40.0 * fy]
                } else {
                    let t = 8.0 * ((x as f32 * 0.11).sin() * (y as f32 * 0.07).cos());
                    [128.0 + t, 64.0 + t, 128.0 + t]
                }
            };
            let o = y * stride + x * 3;
            for c in 0..3 {
                data[o + c] = rgb[c].clamp(0.0, 255.0) as u8;
            }
        }
    }
    data
}

/// The nearest-rank percentile `q` (0..=1) of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the element was set to, read back after the options were applied, so that the
/// bare loop uses exactly the same settings (presets included).
struct Settings {
    model: PathBuf,
    provider: Provider,
    device_id: u32,
    fp16: bool,
    engine_cache_dir: Option<PathBuf>,
    ort_library: Option<PathBuf>,
    threads: u32,
    batch: usize,
    noise_level: f64,
}

fn string_property(e: &gst::Element, name: &str) -> String {
    e.property::<Option<String>>(name).unwrap_or_default()
}

fn settings_of(ds: &gst::Element) -> Result<Settings> {
    let v = ds.property_value("execution-provider");
    let nick = glib::EnumValue::from_value(&v)
        .map(|(_, ev)| ev.nick().to_string())
        .ok_or_else(|| anyhow!("cannot read execution-provider"))?;
    let provider: Provider = nick.parse().map_err(|e| anyhow!("{e}"))?;
    let path = |s: String| (!s.is_empty()).then(|| PathBuf::from(s));
    Ok(Settings {
        model: path(string_property(ds, "model")).ok_or_else(|| anyhow!("no model set"))?,
        provider,
        device_id: ds.property::<u32>("device-id"),
        fp16: ds.property::<bool>("fp16"),
        engine_cache_dir: path(string_property(ds, "engine-cache-dir")),
        ort_library: path(string_property(ds, "ort-library")),
        threads: ds.property::<u32>("inference-threads"),
        batch: ds.property::<u32>("batch-size") as usize,
        noise_level: ds.property::<f64>("noise-level"),
    })
}

/// The bare loop's session, loaded once.
struct Bare {
    backend: OrtBackend,
    provider: Provider,
    /// How long the session took to build (with TensorRT: the engine build, or loading
    /// it from `engine-cache-dir`).
    build: Duration,
}

fn load_bare(s: &Settings, spec: &ModelSpec, padded: (usize, usize), verbose: u8) -> Result<Bare> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let (env, _) = runtime::environment(&runtime::library_candidates(
        s.ort_library.as_deref(),
        beside.as_deref(),
    ))?;
    let opts = SessionOptions {
        provider: s.provider,
        device_id: s.device_id,
        fp16: s.fp16,
        engine_cache_dir: s.engine_cache_dir.clone(),
        intra_threads: s.threads as usize,
        batch_size: s.batch,
        profile_size: Some(padded),
    };
    let started = Instant::now();
    let model = runtime::load_model(&env, spec, &opts).context("cannot start the bare ONNX Runtime loop")?;
    let build = started.elapsed();
    if verbose > 0 {
        for w in &model.warnings {
            eprintln!("bare loop: {w}");
        }
    }
    let backend = OrtBackend::new(model);
    Ok(Bare {
        provider: backend.provider(),
        backend,
        build,
    })
}

struct PipelineResult {
    fps: f64,
    provider: String,
    latencies_ms: Vec<f64>,
    element_mean_latency_ms: f64,
    /// The element's own timing of one model run, and the share of time it ran.
    element_mean_batch_ms: f64,
    element_busy: f64,
    /// The element's session build (`build-ms`), TensorRT engine cache (`engine-cache`)
    /// and `concurrent-runs`, from its stats.
    element_build_ms: f64,
    engine_cache: String,
    concurrent_runs: u64,
}

#[derive(Default)]
struct Arrivals {
    /// When each frame (by PTS) reached the sink.
    at: HashMap<u64, Instant>,
    provider: Option<String>,
    /// The element's `mean-latency` and `stats` when the stream's last frame arrived
    /// (while every element is still on its engine).
    mean_latency: f64,
    stats: Option<gst::Structure>,
}

impl Arrivals {
    /// A number in the element's `stats` at the last frame (NaN when absent).
    fn stat_f64(&self, field: &str) -> f64 {
        self.stats
            .as_ref()
            .and_then(|s| s.get::<f64>(field).ok())
            .unwrap_or(f64::NAN)
    }

    /// A count in the element's `stats` at the last frame (0 when absent).
    fn stat_u64(&self, field: &str) -> u64 {
        self.stats.as_ref().and_then(|s| s.get::<u64>(field).ok()).unwrap_or(0)
    }

    /// The timed window of a stream of `warmup` + `frames` frames pushed at `pushed`:
    /// from the last warm-up frame's arrival (the first push without warm-up) to the
    /// last frame's, its frames/s, and each timed frame's latency in ms. `who` prefixes
    /// the errors ("stream 2: ", or nothing).
    fn window(&self, pushed: &[Instant], warmup: usize, frames: usize, who: &str) -> Result<Window> {
        let total = warmup + frames;
        let arrival = |i: usize| self.at.get(&(i as u64 * FRAME_NS)).copied();
        if self.at.len() < total || pushed.len() < total {
            bail!(
                "{who}the pipeline delivered {} of {total} frames ({} pushed)",
                self.at.len(),
                pushed.len()
            );
        }
        let never = |i: usize| anyhow!("{who}frame {i} never arrived");
        let end = arrival(total - 1).ok_or_else(|| never(total - 1))?;
        let start = if warmup > 0 {
            arrival(warmup - 1).ok_or_else(|| never(warmup - 1))?
        } else {
            pushed[0]
        };
        let secs = end.saturating_duration_since(start).as_secs_f64();
        Ok(Window {
            start,
            end,
            fps: if secs > 0.0 { frames as f64 / secs } else { 0.0 },
            latencies_ms: (warmup..total)
                .filter_map(|i| arrival(i).map(|t| t.saturating_duration_since(pushed[i]).as_secs_f64() * 1e3))
                .collect(),
        })
    }
}

/// A stream's timed window ([`Arrivals::window`]).
struct Window {
    start: Instant,
    end: Instant,
    fps: f64,
    latencies_ms: Vec<f64>,
}

/// Records on `sink` when each of the `total` frames of `ds`'s stream arrives, the
/// element's provider, and its `mean-latency` and `stats` at the last frame.
fn record_arrivals(sink: &gst_app::AppSink, ds: &gst::Element, total: usize) -> Arc<Mutex<Arrivals>> {
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let recorded = arrivals.clone();
    let weak = ds.downgrade();
    let total = total as u64;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let now = Instant::now();
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let pts = sample.buffer().and_then(|b| b.pts()).map(|t| t.nseconds()).unwrap_or(0);
                let mut a = recorded.lock().unwrap_or_else(|e| e.into_inner());
                a.at.insert(pts, now);
                if let Some(ds) = weak.upgrade() {
                    if a.provider.is_none() {
                        a.provider = ds.property::<Option<String>>("provider").filter(|p| !p.is_empty());
                    }
                    if a.at.len() as u64 == total {
                        a.mean_latency = ds.property::<f64>("mean-latency");
                        a.stats = Some(ds.property::<gst::Structure>("stats"));
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    arrivals
}

fn pipeline_run(
    ds: gst::Element,
    frames_rgb: &[Vec<u8>],
    (w, h): (usize, usize),
    warmup: usize,
    frames: usize,
) -> Result<PipelineResult> {
    let total = warmup + frames;
    let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w as u32, h as u32)
        .fps(gst::Fraction::new(25, 1))
        .build()
        .context("video info")?
        .to_caps()
        .context("caps")?;
    let src = gst_app::AppSrc::builder()
        .name("src")
        .caps(&caps)
        .format(gst::Format::Time)
        .is_live(false)
        .do_timestamp(false)
        .block(true)
        .max_buffers(2)
        .max_bytes(0)
        .build();
    let sink = gst_app::AppSink::builder().name("sink").sync(false).build();
    let pipeline = gst::Pipeline::with_name("bench");
    pipeline.add_many([src.upcast_ref::<gst::Element>(), &ds, sink.upcast_ref()])?;
    gst::Element::link_many([src.upcast_ref::<gst::Element>(), &ds, sink.upcast_ref()])
        .context("cannot link appsrc ! denoiseseg ! appsink")?;

    let arrivals = record_arrivals(&sink, &ds, total);

    let buffers: Vec<gst::Buffer> = frames_rgb.iter().map(|f| gst::Buffer::from_slice(f.clone())).collect();
    let pusher = spawn_pusher(src.clone(), buffers, total, FRAME_NS);
    let ending = common::run_pipeline(&pipeline, &ds, Progress::None);
    let pushed = pusher.join().map_err(|_| anyhow!("the pushing thread panicked"))?;
    let ending = ending?;
    if ending != common::Ending::Eos {
        bail!("interrupted");
    }
    let a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    let Window { fps, latencies_ms, .. } = a.window(&pushed, warmup, frames, "")?;
    Ok(PipelineResult {
        fps,
        provider: a.provider.clone().unwrap_or_else(|| "unknown".into()),
        latencies_ms,
        element_mean_latency_ms: a.mean_latency,
        element_mean_batch_ms: a.stat_f64("mean-batch-ms"),
        element_busy: a.stat_f64("busy"),
        element_build_ms: a.stat_f64("build-ms"),
        engine_cache: a
            .stats
            .as_ref()
            .and_then(|s| s.get::<String>("engine-cache").ok())
            .unwrap_or_default(),
        concurrent_runs: a.stat_u64("concurrent-runs"),
    })
}

/// The median (the mean of the middle two for an even count; NaN when empty).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

/// A denoiseseg element named `name` with the options applied.
fn make_element(args: &Args, name: &str) -> Result<gst::Element> {
    let ds = gst::ElementFactory::make("denoiseseg")
        .name(name)
        .build()
        .context("cannot create the denoiseseg element")?;
    args.element.apply(&ds)?;
    if let Some(t) = args.threads {
        common::set_property_checked(&ds, "inference-threads", &t.to_string())?;
    }
    Ok(ds)
}

pub fn main(args: Args, verbose: u8) -> Result<ExitCode> {
    common::init_gstreamer()?;
    let (w, h) = common::parse_size(&args.size).map_err(|e| anyhow!("--size {}: {e}", args.size))?;
    let (w, h) = (w as usize, h as usize);
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    if args.streams == 0 {
        bail!("--streams must be at least 1");
    }
    common::check_report_path(args.json.as_deref())?;
    if let (Some(t), Some(i)) = (args.threads, args.element.inference_threads) {
        if t != i {
            bail!("--threads {t} and --inference-threads {i} disagree; give one");
        }
    }
    let ds = make_element(&args, "ds")?;
    let s = settings_of(&ds)?;
    let mut ds = Some(ds);
    let spec = ModelSpec::load(&s.model)?;
    let m = spec.size_multiple.max(1);
    let (pw, ph) = (round_up(w, m), round_up(h, m));
    let batch = s.batch.max(1);
    let frames = args.frames.div_ceil(batch) * batch;
    let warmup = args.warmup.div_ceil(batch) * batch;

    // The inputs: the same noisy frames for both parts.
    let layout = FrameLayout::packed(PixelFormat::Rgb, w, h);
    let noise = NoiseParams::gaussian(args.noise_sigma.max(0.0));
    let frames_rgb: Vec<Vec<u8>> = (0..DISTINCT_FRAMES)
        .map(|i| {
            let mut f = pattern(&layout, i);
            add_noise_interleaved(
                &mut f,
                w,
                h,
                layout.strides[0],
                3,
                &[0, 1, 2],
                &noise,
                NOISE_SEED,
                i as u64,
            );
            f
        })
        .collect();
    let mut estimator = SigmaEstimator::new();
    let mut inputs = Vec::with_capacity(DISTINCT_FRAMES);
    for f in &frames_rgb {
        let mut t = Tensors::default();
        t.set_size(w, h, m);
        convert::frame_to_planar(f, &layout, &mut t.image, t.pw, t.ph)?;
        t.sigma = if s.noise_level >= 0.0 {
            (s.noise_level / 255.0) as f32
        } else if spec.sigma_input.is_some() {
            estimator.estimate(&t.image, w, h, t.pw)
        } else {
            0.0
        };
        inputs.push(t);
    }
    if verbose > 0 {
        eprintln!(
            "model {} ({}), {w}x{h} padded to {pw}x{ph}, batch {batch}, threads {}, provider {}",
            s.model.display(),
            spec.name,
            s.threads,
            s.provider
        );
    }

    if args.streams > 1 {
        return streams_main(&args, &s, &spec, (w, h), (pw, ph), batch, warmup, frames, &frames_rgb);
    }
    let mut bare = load_bare(&s, &spec, (pw, ph), verbose)?;
    let repeat = args.repeat.max(1);
    let (mut bare_fps, mut pipe_fps, mut lat, mut ms_per_batch) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut element_latency = Vec::new();
    let mut element_batch = Vec::new();
    let mut element_busy = Vec::new();
    let mut element_build = Vec::new();
    let (mut engine_cache, mut concurrent_runs) = (Vec::new(), 0);
    let mut provider = String::new();
    for r in 0..repeat {
        let round = if repeat > 1 {
            format!(" (round {} of {repeat})", r + 1)
        } else {
            String::new()
        };
        eprintln!("bare ONNX Runtime loop: {warmup} warm-up + {frames} frames{round} ...");
        let t = runtime::bare_loop(&mut bare.backend, &inputs, batch, warmup, frames)?;
        bare_fps.push(t.fps());
        ms_per_batch.extend(t.batch_times.iter().map(|d| d.as_secs_f64() * 1e3));
        eprintln!("element pipeline: {warmup} warm-up + {frames} frames{round} ...");
        let ds = if r == 0 { ds.take() } else { None };
        let ds = match ds {
            Some(ds) => ds,
            None => make_element(&args, "ds")?,
        };
        let p = pipeline_run(ds, &frames_rgb, (w, h), warmup, frames)?;
        pipe_fps.push(p.fps);
        lat.extend(p.latencies_ms);
        element_latency.push(p.element_mean_latency_ms);
        element_batch.push(p.element_mean_batch_ms);
        element_busy.push(p.element_busy);
        element_build.push(p.element_build_ms);
        engine_cache.push(p.engine_cache);
        concurrent_runs = p.concurrent_runs;
        provider = p.provider;
    }
    let bare_cache = bare.backend.build_report().cache.name();
    drop(bare.backend);
    lat.sort_by(f64::total_cmp);
    ms_per_batch.sort_by(f64::total_cmp);
    let (bare_med, pipe_med) = (median(&bare_fps), median(&pipe_fps));
    let (p50, p95, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.95), percentile(&lat, 0.99));
    let ratio = if bare_med > 0.0 { pipe_med / bare_med } else { f64::NAN };
    let report = json!({
        "command": "bench",
        "model": s.model.display().to_string(),
        "model_name": spec.name,
        "size": [w, h],
        "padded_size": [pw, ph],
        "batch_size": batch,
        "threads": s.threads,
        "provider_requested": s.provider.name(),
        "provider": provider,
        "noise_level": s.noise_level,
        "input_noise_sigma": args.noise_sigma,
        "warmup": warmup,
        "frames": frames,
        "repeat": repeat,
        "bare": {
            "fps": bare_med,
            "fps_rounds": bare_fps,
            "provider": bare.provider.name(),
            "session_build_s": bare.build.as_secs_f64(),
            "engine_cache": bare_cache,
            "ms_per_batch_median": percentile(&ms_per_batch, 0.5),
        },
        "pipeline": {
            "fps": pipe_med,
            "fps_rounds": pipe_fps,
            "latency_ms": {
                "p50": p50,
                "p95": p95,
                "p99": p99,
                "mean": lat.iter().sum::<f64>() / lat.len().max(1) as f64,
                "max": lat.last().copied().unwrap_or(f64::NAN),
            },
            "element_mean_latency_ms": median(&element_latency),
            "element_mean_batch_ms": median(&element_batch),
            "element_busy": median(&element_busy),
            "element_build_ms": element_build,
            "engine_cache": engine_cache,
            "concurrent_runs": concurrent_runs,
        },
        "ratio": ratio,
    });

    let table = format!(
        "model {} at {w}x{h} (padded {pw}x{ph}), batch {batch}, threads {}, provider {}\n\
         {:<22} {:>10} {:>10} {:>10} {:>10}\n\
         {:<22} {:>10.2} {:>10} {:>10} {:>10}\n\
         {:<22} {:>10.2} {:>10.1} {:>10.1} {:>10.1}\n\
         one model run: {:.1} ms bare, {:.1} ms in the element, which ran the model {:.1} % of the time\n\
         pipeline / bare = {:.3}{}",
        spec.name,
        if s.threads == 0 {
            "auto".to_string()
        } else {
            s.threads.to_string()
        },
        provider,
        "",
        if repeat > 1 { "median f/s" } else { "frames/s" },
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "bare ONNX Runtime loop",
        bare_med,
        "-",
        "-",
        "-",
        "element pipeline",
        pipe_med,
        p50,
        p95,
        p99,
        percentile(&ms_per_batch, 0.5),
        median(&element_batch),
        100.0 * median(&element_busy),
        ratio,
        if provider == "cpu" && ratio < 0.95 {
            " (below the 0.95 target on CPU)"
        } else {
            ""
        },
    );
    common::emit_report(&table, &report, args.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// `bench --streams N`: one shared engine against N private ones (see [`streams`]).
#[allow(clippy::too_many_arguments)]
fn streams_main(
    args: &Args,
    s: &Settings,
    spec: &ModelSpec,
    (w, h): (usize, usize),
    (pw, ph): (usize, usize),
    batch: usize,
    warmup: usize,
    frames: usize,
    frames_rgb: &[Vec<u8>],
) -> Result<ExitCode> {
    let n = args.streams;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as u32;
    // Given threads go to every session; otherwise the cores, shared out.
    let (threads_shared, threads_private) = if s.threads > 0 {
        (s.threads, s.threads)
    } else {
        (cores, (cores / n as u32).max(1))
    };
    let make = |name: &str| make_element(args, name);
    let setup = streams::Setup {
        streams: n,
        repeat: args.repeat.max(1),
        warmup,
        frames,
        size: (w, h),
        frames_rgb,
        threads_shared,
        threads_private,
        make: &make,
    };
    let m = streams::measure(&setup)?;
    let [(shared_fps, shared_p99), (private_fps, private_p99)] = m.summary;
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let (fps_ratio, p99_ratio) = (ratio(shared_fps, private_fps), ratio(shared_p99, private_p99));
    let report = json!({
        "command": "bench",
        "model": s.model.display().to_string(),
        "model_name": spec.name,
        "size": [w, h],
        "padded_size": [pw, ph],
        "batch_size": batch,
        "provider_requested": s.provider.name(),
        "provider": m.provider,
        "noise_level": s.noise_level,
        "input_noise_sigma": args.noise_sigma,
        "warmup": warmup,
        "frames": frames,
        "repeat": setup.repeat,
        "streams": n,
        "shared": m.shared,
        "private": m.private,
        "ratio": {
            "aggregate_fps": fps_ratio,
            "p99_ms_worst_stream": p99_ratio,
        },
    });
    let mut table = format!(
        "{n} streams of model {} at {w}x{h} (padded {pw}x{ph}), batch {batch}, provider {}\n\
         shared: 1 session (model-instance-id={}), intra-op threads {threads_shared}; \
         private: {n} sessions, intra-op threads {threads_private} each\n\
         {:<8} {:>6} {:>10} {:>9} {:>9} {:>8} {:>12} {:>8}\n",
        spec.name,
        m.provider,
        streams::SHARED_ID,
        "engine",
        "stream",
        if setup.repeat > 1 { "median f/s" } else { "frames/s" },
        "p50 ms",
        "p99 ms",
        "received",
        "batch frames",
        "streams",
    );
    for row in &m.rows {
        table.push_str(row);
        table.push('\n');
    }
    table.push_str(&format!(
        "(\"all\": aggregate frames/s, median stream p50, worst stream p99)\n\
         shared / private = {fps_ratio:.3} aggregate frames/s, {p99_ratio:.3} worst p99 latency{}",
        if m.provider == "cpu" {
            " (on a CPU the private sessions share the same cores)"
        } else {
            ""
        }
    ));
    common::emit_report(&table, &report, args.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn pattern_is_deterministic_and_fills_the_frame() {
        let layout = FrameLayout::packed(PixelFormat::Rgb, 37, 21);
        let a = pattern(&layout, 1);
        assert_eq!(a, pattern(&layout, 1));
        assert_eq!(a.len(), layout.size);
        assert_ne!(a, pattern(&layout, 2));
    }
}
