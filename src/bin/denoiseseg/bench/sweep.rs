//! Measuring one or several batch sizes side by side: for each, the bare loop on its
//! own session and a fresh element at that batch size, on the same frames; rounds
//! (`--repeat`) go over every batch size in turn, so that load on the machine hits all
//! batch sizes alike.
use anyhow::Result;

use denoiseseg::model::ModelSpec;
use denoiseseg::runtime;

use super::bare::{self, Settings};
use super::inputs::Inputs;
use super::pipeline;
use super::report::{median, percentile};
use crate::common;

/// What every batch size shares.
pub struct Setup<'a> {
    pub settings: &'a Settings,
    pub spec: &'a ModelSpec,
    pub size: (usize, usize),
    pub padded: (usize, usize),
    /// Frames timed and warm-up frames asked for; each batch size rounds them up to
    /// whole batches.
    pub frames: usize,
    pub warmup: usize,
    pub repeat: usize,
    pub inputs: &'a Inputs,
    pub verbose: u8,
    /// A fresh element set up for the given batch size.
    pub make: &'a dyn Fn(usize) -> Result<gst::Element>,
}

/// One batch size's figures over all rounds.
pub struct Row {
    pub batch: usize,
    pub warmup: usize,
    pub frames: usize,
    pub bare_provider: &'static str,
    pub bare_build_s: f64,
    pub bare_cache: &'static str,
    pub bare_fps: Vec<f64>,
    /// Every timed batch's run time in the bare loop, sorted.
    pub ms_per_batch: Vec<f64>,
    pub pipe_fps: Vec<f64>,
    /// Every timed frame's latency, all rounds, sorted.
    pub latencies_ms: Vec<f64>,
    pub timed_frames: Vec<u64>,
    pub element_latency: Vec<f64>,
    pub element_batch_ms: Vec<f64>,
    pub element_busy: Vec<f64>,
    /// Frames per model run in the element: its `mean-batch-frames` (whole stream), and
    /// inside the timed window.
    pub element_batch_frames: Vec<f64>,
    pub window_batch_frames: Vec<f64>,
    pub element_build_ms: Vec<f64>,
    pub engine_cache: Vec<String>,
    pub concurrent_runs: u64,
    pub provider: String,
}

impl Row {
    pub fn bare_median(&self) -> f64 {
        median(&self.bare_fps)
    }
    pub fn pipe_median(&self) -> f64 {
        median(&self.pipe_fps)
    }
    /// Pipeline frames/s over bare-loop frames/s, both medians.
    pub fn ratio(&self) -> f64 {
        let bare = self.bare_median();
        if bare > 0.0 {
            self.pipe_median() / bare
        } else {
            f64::NAN
        }
    }
    pub fn latency(&self, q: f64) -> f64 {
        percentile(&self.latencies_ms, q)
    }
}

/// Measures every batch size of `batches` (each once per round, in the given order).
pub fn measure(setup: &Setup, batches: &[usize]) -> Result<Vec<Row>> {
    let s = setup.settings;
    let mut bares = Vec::with_capacity(batches.len());
    let mut rows = Vec::with_capacity(batches.len());
    for &batch in batches {
        let bare = bare::load(s, setup.spec, setup.padded, batch, setup.verbose)?;
        rows.push(Row {
            batch,
            warmup: setup.warmup.div_ceil(batch) * batch,
            frames: setup.frames.div_ceil(batch) * batch,
            bare_provider: bare.provider.name(),
            bare_build_s: bare.build.as_secs_f64(),
            bare_cache: "",
            bare_fps: Vec::new(),
            ms_per_batch: Vec::new(),
            pipe_fps: Vec::new(),
            latencies_ms: Vec::new(),
            timed_frames: Vec::new(),
            element_latency: Vec::new(),
            element_batch_ms: Vec::new(),
            element_busy: Vec::new(),
            element_batch_frames: Vec::new(),
            window_batch_frames: Vec::new(),
            element_build_ms: Vec::new(),
            engine_cache: Vec::new(),
            concurrent_runs: 0,
            provider: String::new(),
        });
        bares.push(bare);
    }
    let sweep = batches.len() > 1;
    for r in 0..setup.repeat {
        let round = if setup.repeat > 1 {
            format!(" (round {} of {})", r + 1, setup.repeat)
        } else {
            String::new()
        };
        for (row, bare) in rows.iter_mut().zip(bares.iter_mut()) {
            let (batch, warmup, frames) = (row.batch, row.warmup, row.frames);
            let at = if sweep {
                format!(" at batch {batch}")
            } else {
                String::new()
            };
            eprintln!("bare ONNX Runtime loop{at}: {warmup} warm-up + {frames} frames{round} ...");
            let t = runtime::bare_loop(
                &mut bare.backend,
                &setup.inputs.tensors,
                batch,
                warmup,
                frames,
                &common::interrupted,
            )?;
            row.bare_fps.push(t.fps());
            row.ms_per_batch
                .extend(t.batch_times.iter().map(|d| d.as_secs_f64() * 1e3));
            eprintln!("element pipeline{at}: {warmup} warm-up + {frames} frames{round} ...");
            let ds = (setup.make)(batch)?;
            let p = pipeline::run(ds, &setup.inputs.rgb, setup.size, warmup, frames)?;
            row.pipe_fps.push(p.fps);
            row.latencies_ms.extend(p.latencies_ms);
            row.timed_frames.push(p.timed_frames);
            row.element_latency.push(p.element_mean_latency_ms);
            row.element_batch_ms.push(p.element_mean_batch_ms);
            row.element_busy.push(p.element_busy);
            row.element_batch_frames.push(p.element_batch_frames);
            row.window_batch_frames.push(p.window_batch_frames);
            row.element_build_ms.push(p.element_build_ms);
            row.engine_cache.push(p.engine_cache);
            row.concurrent_runs = p.concurrent_runs;
            row.provider = p.provider;
        }
    }
    for (row, bare) in rows.iter_mut().zip(bares) {
        row.bare_cache = bare.backend.build_report().cache.name();
        row.latencies_ms.sort_by(f64::total_cmp);
        row.ms_per_batch.sort_by(f64::total_cmp);
    }
    Ok(rows)
}
