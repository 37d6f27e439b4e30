//! The element pipeline's side: `appsrc ! denoiseseg ! appsink` fed as fast as the
//! source accepts frames, each frame's arrival recorded at the sink, and the timed
//! window ([`Arrivals::window`]) the frames/s and latencies come from. The `--streams`
//! bench runs N such branches in one pipeline with the same pieces.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;

use crate::common::{self, Progress};

/// The timestamp step of the frames the element benchmarks push: 25 frames/s.
pub const FRAME_NS: u64 = 40_000_000;

/// Pushes `total` frames (cycling through `buffers`, timestamped `frame_ns` apart) into
/// `src` as fast as it accepts them, once the pipeline is PAUSED, then EOS; returns when
/// each frame was accepted (fewer when the pipeline stopped, none when it never paused
/// within two minutes).
pub fn spawn_pusher(
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

/// One run of the element pipeline.
pub struct PipelineResult {
    pub fps: f64,
    /// The frames the model ran inside the timed window (see [`Arrivals::window`]),
    /// and per model run there (NaN without the element's counts).
    pub timed_frames: u64,
    pub window_batch_frames: f64,
    pub provider: String,
    pub latencies_ms: Vec<f64>,
    pub element_mean_latency_ms: f64,
    /// The element's own timing of one model run, and the share of time it ran.
    pub element_mean_batch_ms: f64,
    pub element_busy: f64,
    /// Frames per model run in the element (its `mean-batch-frames`): the batch it
    /// really ran, which batch-timeout or a short stream can make smaller than batch-size.
    pub element_batch_frames: f64,
    /// The element's session build (`build-ms`), TensorRT engine cache (`engine-cache`)
    /// and `concurrent-runs`, from its stats.
    pub element_build_ms: f64,
    pub engine_cache: String,
    pub concurrent_runs: u64,
}

#[derive(Default)]
pub struct Arrivals {
    /// When each frame (by PTS) reached the sink.
    pub at: HashMap<u64, Instant>,
    pub provider: Option<String>,
    /// The element's `mean-latency` and `stats` when the stream's last frame arrived
    /// (while every element is still on its engine).
    pub mean_latency: f64,
    pub stats: Option<gst::Structure>,
    /// The PTS of the frame that opens the timed window (the last warm-up frame), and
    /// the element's counts when it arrived.
    pub start_pts: Option<u64>,
    pub counts_at_start: Option<Counts>,
    /// The element's counts when the last frame arrived.
    pub counts_at_end: Option<Counts>,
}

/// RGB caps of `w` x `h` at 25 frames/s, the bench's frames.
pub fn rgb_caps(w: usize, h: usize) -> Result<gst::Caps> {
    gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w as u32, h as u32)
        .fps(gst::Fraction::new(25, 1))
        .build()
        .context("video info")?
        .to_caps()
        .context("caps")
}

/// The appsrc that feeds a bench pipeline: timestamps set by the pusher, blocking when
/// two frames wait (the element's own queue, not appsrc's, takes the load).
pub fn bench_source(name: &str, caps: &gst::Caps) -> gst_app::AppSrc {
    gst_app::AppSrc::builder()
        .name(name)
        .caps(caps)
        .format(gst::Format::Time)
        .is_live(false)
        .do_timestamp(false)
        .block(true)
        .max_buffers(2)
        .max_bytes(0)
        .build()
}

/// The element's counts of frames the model ran (`inferred`) and of model runs with
/// frames of its stream (`batches`), from its `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub inferred: u64,
    pub batches: u64,
}

impl Counts {
    fn of(stats: &gst::Structure) -> Option<Counts> {
        Some(Counts {
            inferred: stats.get::<u64>("inferred").ok()?,
            batches: stats.get::<u64>("batches").ok()?,
        })
    }
}

impl Arrivals {
    /// A number in the element's `stats` at the last frame (NaN when absent).
    pub fn stat_f64(&self, field: &str) -> f64 {
        self.stats
            .as_ref()
            .and_then(|s| s.get::<f64>(field).ok())
            .unwrap_or(f64::NAN)
    }

    /// A count in the element's `stats` at the last frame (0 when absent).
    pub fn stat_u64(&self, field: &str) -> u64 {
        self.stats.as_ref().and_then(|s| s.get::<u64>(field).ok()).unwrap_or(0)
    }

    /// The timed window of a stream of `warmup` + `frames` frames pushed at `pushed`:
    /// from the last warm-up frame's arrival (the first push without warm-up) to the
    /// last frame's, its frames/s, and each timed frame's latency in ms. `who` prefixes
    /// the errors ("stream 2: ", or nothing).
    ///
    /// The frames/s count the timed frames that arrived in the window. The window
    /// opens at the last warm-up frame, which ends a batch (warm-up and timed frames
    /// are whole batches), and the queue batches frames in their order
    /// (`queue::sequencer`), so every timed frame ran inside it. (Before the queue
    /// batched in order, two pre-processing workers could run the last warm-up frame in
    /// the batch after its own, and the window then held one batch less than it counted:
    /// at batch 8 with 16 timed frames, twice the real frames/s.) The element's counts
    /// of frames and model runs between the window's ends (`timed_runs`) say how many
    /// frames each run had; they are sampled as frames reach the sink, so a model
    /// running ahead of the sink shifts them by a run, and they do not set the pace.
    pub fn window(&self, pushed: &[Instant], warmup: usize, frames: usize, who: &str) -> Result<Window> {
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
        let (start, before) = if warmup > 0 {
            let start = arrival(warmup - 1).ok_or_else(|| never(warmup - 1))?;
            (start, self.counts_at_start)
        } else {
            (pushed[0], Some(Counts::default()))
        };
        let timed_frames = frames as u64;
        // Without the element's counts (an older plugin), or when none ran in the window
        // (a model far ahead of the sink), nothing is said of the runs.
        let timed_runs = match (before, self.counts_at_end) {
            (Some(a), Some(b)) if b.inferred > a.inferred && b.batches > a.batches => {
                Some((b.batches - a.batches, b.inferred - a.inferred))
            }
            _ => None,
        };
        let secs = end.saturating_duration_since(start).as_secs_f64();
        Ok(Window {
            start,
            end,
            timed_frames,
            timed_runs,
            fps: if secs > 0.0 { timed_frames as f64 / secs } else { 0.0 },
            latencies_ms: (warmup..total)
                .filter_map(|i| arrival(i).map(|t| t.saturating_duration_since(pushed[i]).as_secs_f64() * 1e3))
                .collect(),
        })
    }
}

/// A stream's timed window ([`Arrivals::window`]).
pub struct Window {
    pub start: Instant,
    pub end: Instant,
    /// The timed frames (those that arrived after the warm-up).
    pub timed_frames: u64,
    /// The model runs between `start` and `end` and the frames they ran, from the
    /// element's counts (None without them, or when none ran in the window).
    pub timed_runs: Option<(u64, u64)>,
    pub fps: f64,
    pub latencies_ms: Vec<f64>,
}

/// Records on `sink` when each of the `total` frames of `ds`'s stream arrives, the
/// element's provider, its counts when frame `warmup - 1` arrives, and its
/// `mean-latency` and `stats` at the last frame.
pub fn record_arrivals(
    sink: &gst_app::AppSink,
    ds: &gst::Element,
    warmup: usize,
    total: usize,
) -> Arc<Mutex<Arrivals>> {
    let arrivals = Arc::new(Mutex::new(Arrivals {
        start_pts: warmup.checked_sub(1).map(|i| i as u64 * FRAME_NS),
        ..Arrivals::default()
    }));
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
                    if a.start_pts == Some(pts) {
                        a.counts_at_start = Counts::of(&ds.property::<gst::Structure>("stats"));
                    }
                    if a.at.len() as u64 == total {
                        a.mean_latency = ds.property::<f64>("mean-latency");
                        let stats = ds.property::<gst::Structure>("stats");
                        a.counts_at_end = Counts::of(&stats);
                        a.stats = Some(stats);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    arrivals
}

/// Runs `appsrc ! ds ! appsink` on `warmup` + `frames` frames cycled from `frames_rgb`.
pub fn run(
    ds: gst::Element,
    frames_rgb: &[Vec<u8>],
    (w, h): (usize, usize),
    warmup: usize,
    frames: usize,
) -> Result<PipelineResult> {
    let total = warmup + frames;
    let src = bench_source("src", &rgb_caps(w, h)?);
    let sink = gst_app::AppSink::builder().name("sink").sync(false).build();
    let pipeline = gst::Pipeline::with_name("bench");
    pipeline.add_many([src.upcast_ref::<gst::Element>(), &ds, sink.upcast_ref()])?;
    gst::Element::link_many([src.upcast_ref::<gst::Element>(), &ds, sink.upcast_ref()])
        .context("cannot link appsrc ! denoiseseg ! appsink")?;

    let arrivals = record_arrivals(&sink, &ds, warmup, total);

    let buffers: Vec<gst::Buffer> = frames_rgb.iter().map(|f| gst::Buffer::from_slice(f.clone())).collect();
    let pusher = spawn_pusher(src.clone(), buffers, total, FRAME_NS);
    let ending = common::run_pipeline(&pipeline, &ds, Progress::None);
    let pushed = pusher.join().map_err(|_| anyhow!("the pushing thread panicked"))?;
    let ending = ending?;
    if ending != common::Ending::Eos {
        bail!("interrupted");
    }
    let a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    let Window {
        fps,
        timed_frames,
        timed_runs,
        latencies_ms,
        ..
    } = a.window(&pushed, warmup, frames, "")?;
    Ok(PipelineResult {
        fps,
        timed_frames,
        // Frames per run: both counts shift alike when the model runs ahead of the sink.
        window_batch_frames: match timed_runs {
            Some((runs, ran)) => ran as f64 / runs as f64,
            None => f64::NAN,
        },
        provider: a.provider.clone().unwrap_or_else(|| "unknown".into()),
        latencies_ms,
        element_mean_latency_ms: a.mean_latency,
        element_mean_batch_ms: a.stat_f64("mean-batch-ms"),
        element_busy: a.stat_f64("busy"),
        element_batch_frames: a.stat_f64("mean-batch-frames"),
        element_build_ms: a.stat_f64("build-ms"),
        engine_cache: a
            .stats
            .as_ref()
            .and_then(|s| s.get::<String>("engine-cache").ok())
            .unwrap_or_default(),
        concurrent_runs: a.stat_u64("concurrent-runs"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arrivals of `warmup` + `frames` frames, all pushed at `t0`, arriving in batches
    /// as `batches` lists them (frame indices, by batch, in the order the model ran
    /// them), one batch every 100 ms; `inferred` counts as the element's would.
    fn arrivals(t0: Instant, batches: &[Vec<usize>], warmup: usize) -> Arrivals {
        let mut a = Arrivals {
            start_pts: warmup.checked_sub(1).map(|i| i as u64 * FRAME_NS),
            ..Arrivals::default()
        };
        // Output is in order: a frame leaves once it and every frame before it ran.
        let ran_in = |i: usize| batches.iter().position(|b| b.contains(&i)).unwrap();
        let total: usize = batches.iter().map(Vec::len).sum();
        for i in 0..total {
            let out = (0..=i).map(ran_in).max().unwrap();
            let at = t0 + Duration::from_millis(100 * (out as u64 + 1));
            a.at.insert(i as u64 * FRAME_NS, at);
            if warmup > 0 && i == warmup - 1 {
                a.counts_at_start = Some(Counts {
                    inferred: batches[..=out].iter().map(Vec::len).sum::<usize>() as u64,
                    batches: out as u64 + 1,
                });
            }
        }
        a.counts_at_end = Some(Counts {
            inferred: total as u64,
            batches: batches.len() as u64,
        });
        a
    }

    #[test]
    fn the_window_times_the_frames_after_the_warm_up_and_counts_the_runs_in_it() {
        let t0 = Instant::now();
        let pushed = vec![t0; 24];
        // Batch 8, 8 warm-up + 16 timed frames, in order: 2 batches in 200 ms.
        let in_order: Vec<Vec<usize>> = (0..3).map(|b| (b * 8..b * 8 + 8).collect()).collect();
        let w = arrivals(t0, &in_order, 8).window(&pushed, 8, 16, "").unwrap();
        assert_eq!(w.timed_frames, 16);
        assert_eq!(w.timed_runs, Some((2, 16)));
        assert_eq!(w.end - w.start, Duration::from_millis(200));
        assert!((w.fps - 80.0).abs() < 1e-9, "{}", w.fps);
        assert_eq!(w.latencies_ms.len(), 16);

        // Smaller batches than batch-size (batch-timeout 0 runs what is there): the
        // window says how many runs its frames took.
        let small = vec![
            vec![0, 1],
            (2..8).collect(),
            (8..14).collect(),
            (14..20).collect(),
            (20..24).collect(),
        ];
        let w = arrivals(t0, &small, 8).window(&pushed, 8, 16, "").unwrap();
        assert_eq!((w.timed_frames, w.timed_runs), (16, Some((3, 16))));
        assert_eq!(
            w.latencies_ms.len(),
            16,
            "every frame after the warm-up has its latency"
        );

        // Without warm-up the window opens at the first push and holds every frame.
        let w = arrivals(t0, &in_order, 0).window(&pushed, 0, 24, "").unwrap();
        assert_eq!(w.timed_frames, 24);

        // A model far faster than the rest of the pipeline had run every frame before
        // the last warm-up frame reached the sink: the pace is still the frames that
        // arrived, and nothing is said of the runs.
        let mut ahead = arrivals(t0, &in_order, 8);
        ahead.counts_at_start = ahead.counts_at_end;
        let w = ahead.window(&pushed, 8, 16, "").unwrap();
        assert_eq!((w.timed_frames, w.timed_runs), (16, None));
        assert!(w.fps > 0.0);
    }

    #[test]
    fn a_stream_that_lost_frames_is_an_error() {
        let t0 = Instant::now();
        let mut a = arrivals(t0, &[(0..8).collect()], 2);
        a.at.remove(&(5 * FRAME_NS));
        let e = a.window(&[t0; 8], 2, 6, "stream 1: ").err().unwrap();
        assert!(
            e.to_string().contains("stream 1: the pipeline delivered 7 of 8 frames"),
            "{e}"
        );
    }
}
