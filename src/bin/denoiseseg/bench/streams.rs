//! `denoiseseg bench --streams N`: N streams in one process, once on one shared engine
//! (`model-instance-id`, one session and one inference thread, batches filled from all
//! streams) and once on N private engines (one session each, each batch from its own
//! stream), alternated over `--repeat` rounds so that both are measured side by side.
//!
//! One pipeline holds N branches `appsrc ! denoiseseg ! appsink`, each fed the bench's
//! frames as fast as its source accepts them by a thread of its own; a frame's latency
//! runs from the moment its appsrc accepted it to its arrival at its appsink, as in the
//! single-stream bench.
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;
use serde_json::{json, Value};

use denoiseseg::model::ModelSpec;

use super::bare::Settings;
use super::pipeline::{bench_source, record_arrivals, rgb_caps, spawn_pusher, FRAME_NS};
use super::report::{median, percentile};
use super::{make_element, Args};
use crate::common::{self, Progress};

/// The engine id of the shared configuration.
pub const SHARED_ID: &str = "bench-shared";

/// The two configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config {
    Shared,
    Private,
}

impl Config {
    pub fn name(self) -> &'static str {
        match self {
            Config::Shared => "shared",
            Config::Private => "private",
        }
    }
}

/// One stream of one round.
struct StreamRound {
    pushed: usize,
    received: usize,
    fps: f64,
    /// The frames the model ran in the stream's timed window.
    timed_frames: u64,
    latencies_ms: Vec<f64>,
    start: Instant,
    end: Instant,
    processed: u64,
    batches: u64,
    mean_batch_frames: f64,
    engine_streams: u64,
    provider: String,
}

/// Runs the N elements (named, set up) as N branches of one pipeline; returns each
/// stream's figures and the aggregate frames/s (all streams' timed frames over the
/// time from the first stream's end of warm-up to the last stream's last frame).
fn run_round(
    elements: Vec<gst::Element>,
    frames_rgb: &[Vec<u8>],
    (w, h): (usize, usize),
    warmup: usize,
    frames: usize,
) -> Result<(Vec<StreamRound>, f64)> {
    let total = warmup + frames;
    let caps = rgb_caps(w, h)?;
    let pipeline = gst::Pipeline::with_name("bench-streams");
    let mut branches = Vec::new();
    for (i, ds) in elements.iter().enumerate() {
        let src = bench_source(&format!("src{i}"), &caps);
        let sink = gst_app::AppSink::builder().name(format!("sink{i}")).sync(false).build();
        pipeline.add_many([src.upcast_ref::<gst::Element>(), ds, sink.upcast_ref()])?;
        gst::Element::link_many([src.upcast_ref::<gst::Element>(), ds, sink.upcast_ref()])
            .context("cannot link appsrc ! denoiseseg ! appsink")?;
        let arrivals = record_arrivals(&sink, ds, warmup, total);
        branches.push((src, arrivals));
    }

    let mut pushers = Vec::new();
    for (i, (src, _)) in branches.iter().enumerate() {
        // Each stream starts at another of the distinct frames.
        let buffers: Vec<gst::Buffer> = (0..frames_rgb.len())
            .map(|k| gst::Buffer::from_slice(frames_rgb[(k + i) % frames_rgb.len()].clone()))
            .collect();
        pushers.push(spawn_pusher(src.clone(), buffers, total, FRAME_NS));
    }
    let ending = common::run_pipeline(&pipeline, &elements[0], Progress::None);
    let mut pushed_all = Vec::new();
    for p in pushers {
        pushed_all.push(p.join().map_err(|_| anyhow!("a pushing thread panicked"))?);
    }
    if ending? != common::Ending::Eos {
        bail!("interrupted");
    }

    let mut out = Vec::new();
    for (i, ((_, arrivals), pushed)) in branches.iter().zip(&pushed_all).enumerate() {
        let a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
        let w = a.window(pushed, warmup, frames, &format!("stream {i}: "))?;
        out.push(StreamRound {
            pushed: pushed.len(),
            received: a.at.len(),
            fps: w.fps,
            timed_frames: w.timed_frames,
            latencies_ms: w.latencies_ms,
            start: w.start,
            end: w.end,
            processed: a.stat_u64("processed"),
            batches: a.stat_u64("batches"),
            mean_batch_frames: a.stat_f64("mean-batch-frames"),
            engine_streams: a.stat_u64("engine-streams"),
            provider: a.provider.clone().unwrap_or_else(|| "unknown".into()),
        });
    }
    let start = out.iter().map(|s| s.start).min().expect("at least one stream");
    let end = out.iter().map(|s| s.end).max().expect("at least one stream");
    let secs = end.saturating_duration_since(start).as_secs_f64();
    let timed: u64 = out.iter().map(|s| s.timed_frames).sum();
    let aggregate = if secs > 0.0 { timed as f64 / secs } else { 0.0 };
    Ok((out, aggregate))
}

/// What `bench --streams N` needs from the bench.
pub struct Setup<'a> {
    pub streams: usize,
    pub repeat: usize,
    pub warmup: usize,
    pub frames: usize,
    pub size: (usize, usize),
    pub frames_rgb: &'a [Vec<u8>],
    /// Intra-op threads of the shared session, and of each private one.
    pub threads_shared: u32,
    pub threads_private: u32,
    /// Makes element `name` with the bench's options applied.
    pub make: &'a dyn Fn(&str) -> Result<gst::Element>,
}

/// Both configurations' figures over all rounds.
pub struct Measured {
    pub shared: Value,
    pub private: Value,
    pub provider: String,
    /// Per configuration: aggregate frames/s, worst stream's p99 latency.
    pub summary: [(f64, f64); 2],
    pub rows: Vec<String>,
}

fn make_elements(setup: &Setup, config: Config) -> Result<Vec<gst::Element>> {
    (0..setup.streams)
        .map(|i| {
            let ds = (setup.make)(&format!("ds{i}"))?;
            let (id, threads) = match config {
                Config::Shared => (SHARED_ID, setup.threads_shared),
                Config::Private => ("", setup.threads_private),
            };
            common::set_property_checked(&ds, "model-instance-id", id)?;
            common::set_property_checked(&ds, "inference-threads", &threads.to_string())?;
            Ok(ds)
        })
        .collect()
}

/// Runs both configurations, alternated over the rounds, and sums them up.
pub fn measure(setup: &Setup) -> Result<Measured> {
    let n = setup.streams;
    // Per configuration: per stream pooled latencies, per-round fps and stats.
    let mut lat = vec![vec![Vec::<f64>::new(); n]; 2];
    let mut fps = vec![vec![Vec::<f64>::new(); n]; 2];
    let mut agg = vec![Vec::<f64>::new(); 2];
    let mut last: Vec<Option<Vec<StreamRound>>> = vec![None, None];
    let mut mbf = vec![Vec::<f64>::new(); 2];
    let mut mbf_stream = vec![vec![Vec::<f64>::new(); n]; 2];
    let mut provider = String::new();
    for r in 0..setup.repeat {
        // Alternate which goes first, so that neither always runs on a cold machine.
        let order = if r % 2 == 0 {
            [Config::Shared, Config::Private]
        } else {
            [Config::Private, Config::Shared]
        };
        for config in order {
            let c = config as usize;
            let round = if setup.repeat > 1 {
                format!(" (round {} of {})", r + 1, setup.repeat)
            } else {
                String::new()
            };
            eprintln!(
                "{n} streams on {}: {} warm-up + {} frames each{round} ...",
                match config {
                    Config::Shared => "one shared engine".to_string(),
                    Config::Private => format!("{n} private engines"),
                },
                setup.warmup,
                setup.frames
            );
            let elements = make_elements(setup, config)?;
            let (streams, aggregate) = run_round(elements, setup.frames_rgb, setup.size, setup.warmup, setup.frames)
                .with_context(|| {
                    format!(
                        "{} engine{}",
                        config.name(),
                        if config == Config::Shared { "" } else { "s" }
                    )
                })?;
            agg[c].push(aggregate);
            for (i, s) in streams.iter().enumerate() {
                lat[c][i].extend(&s.latencies_ms);
                fps[c][i].push(s.fps);
                mbf[c].push(s.mean_batch_frames);
                mbf_stream[c][i].push(s.mean_batch_frames);
            }
            provider = streams[0].provider.clone();
            last[c] = Some(streams);
        }
    }

    let mut values = Vec::new();
    let mut summary = [(0.0, 0.0); 2];
    let mut rows = Vec::new();
    for config in [Config::Shared, Config::Private] {
        let c = config as usize;
        let last = last[c].as_ref().expect("every configuration ran");
        let mut per_stream = Vec::new();
        let mut worst_p99 = 0.0f64;
        let mut stream_p50 = Vec::new();
        for i in 0..n {
            let l = &mut lat[c][i];
            l.sort_by(f64::total_cmp);
            let (p50, p99) = (percentile(l, 0.5), percentile(l, 0.99));
            worst_p99 = worst_p99.max(p99);
            stream_p50.push(p50);
            let s = &last[i];
            let f = median(&fps[c][i]);
            let stream_mbf = median(&mbf_stream[c][i]);
            rows.push(format!(
                "{:<8} {:>6} {:>10.2} {:>9.1} {:>9.1} {:>8} {:>12.2} {:>8}",
                config.name(),
                i,
                f,
                p50,
                p99,
                s.received,
                stream_mbf,
                s.engine_streams
            ));
            per_stream.push(json!({
                "stream": i,
                "pushed": s.pushed,
                "received": s.received,
                "processed": s.processed,
                "frames": l.len() / setup.repeat,
                "fps": f,
                "fps_rounds": fps[c][i],
                "latency_ms": { "p50": p50, "p99": p99, "max": l.last().copied().unwrap_or(f64::NAN) },
                "batches": s.batches,
                "mean_batch_frames": stream_mbf,
                "mean_batch_frames_rounds": mbf_stream[c][i],
                "engine_streams": s.engine_streams,
                "provider": s.provider,
            }));
        }
        let aggregate = median(&agg[c]);
        let engine_streams = last.iter().map(|s| s.engine_streams).max().unwrap_or(0);
        let mean_batch_frames = median(&mbf[c]);
        rows.push(format!(
            "{:<8} {:>6} {:>10.2} {:>9.1} {:>9.1} {:>8} {:>12.2} {:>8}",
            config.name(),
            "all",
            aggregate,
            median(&stream_p50),
            worst_p99,
            last.iter().map(|s| s.received).sum::<usize>(),
            mean_batch_frames,
            engine_streams
        ));
        summary[c] = (aggregate, worst_p99);
        values.push(json!({
            "model_instance_id": if config == Config::Shared { SHARED_ID } else { "" },
            "sessions": if config == Config::Shared { 1 } else { n },
            "threads_per_session": if config == Config::Shared { setup.threads_shared } else { setup.threads_private },
            "streams": per_stream,
            "aggregate_fps": aggregate,
            "aggregate_fps_rounds": agg[c],
            "p99_ms_worst_stream": worst_p99,
            "p50_ms_median_stream": median(&stream_p50),
            "mean_batch_frames": mean_batch_frames,
            "engine_streams": engine_streams,
        }));
    }
    let private = values.pop().expect("two configurations");
    let shared = values.pop().expect("two configurations");
    Ok(Measured {
        shared,
        private,
        provider,
        summary,
        rows,
    })
}

/// `bench --streams N`: one shared engine against N private ones, reported.
#[allow(clippy::too_many_arguments)]
pub fn main(
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
    let n = args.opts.streams;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as u32;
    // Given threads go to every session; otherwise the cores, shared out.
    let (threads_shared, threads_private) = if s.threads > 0 {
        (s.threads, s.threads)
    } else {
        (cores, (cores / n as u32).max(1))
    };
    let make = |name: &str| make_element(args, name, None);
    let setup = Setup {
        streams: n,
        repeat: args.opts.repeat.max(1),
        warmup,
        frames,
        size: (w, h),
        frames_rgb,
        threads_shared,
        threads_private,
        make: &make,
    };
    let m = measure(&setup)?;
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
        "input_noise_sigma": args.opts.noise_sigma,
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
        SHARED_ID,
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
    common::emit_report(&table, &report, args.opts.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
