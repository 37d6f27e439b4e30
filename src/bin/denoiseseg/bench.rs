//! `denoiseseg bench`: frames/s and latency of the element pipeline against a bare
//! ONNX Runtime loop on the same model, frames, batch and threads, in one run; with a
//! list of batch sizes, each of them side by side in one report.
//!
//! The bare loop is the engine's [`runtime::bare_loop`]: the same session set-up and
//! `OrtBackend` the element runs, fed pre-made padded tensors, timing inference only
//! ([`bare`]). The pipeline is `appsrc ! denoiseseg ! appsink`, fed the same frames as
//! 8-bit RGB buffers as fast as the source accepts them ([`pipeline`]); the element does
//! everything it does on a real stream (conversion, noise estimate, inference, output
//! frames and class maps). Their ratio says how much the frame queue loses to the bare
//! loop. [`sweep`] measures one or several batch sizes, [`report`] writes the table and
//! the JSON, [`streams`] is `--streams N`.
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use clap::{ArgAction, FromArgMatches};
use gst::prelude::*;

use denoiseseg::model::{round_up, ModelSpec};
#[cfg(doc)]
use denoiseseg::runtime;

use crate::common::{self, ElementOpts};

mod bare;
mod inputs;
mod pipeline;
mod report;
mod streams;
mod sweep;

/// The most frames per inference call (the element's batch-size maximum).
const MAX_BATCH: u32 = 64;

const EXAMPLES: &str = "\
Examples:
  denoiseseg bench                                       the shipped model at 1024x512, 60 frames, on the best provider
  denoiseseg bench --size 1024x512 --provider cpu --threads 2
  denoiseseg bench --provider tensorrt --batch-size 4 --frames 200 --json bench.json
  denoiseseg bench --provider cpu --size 512x256 --batch-size 1,4,8 --repeat 3   one row per batch size
  denoiseseg bench --model my.onnx --size 640x480 --json -     JSON on standard output, the table on standard error
  denoiseseg bench --streams 4 --size 512x256 --provider cuda --batch-size 4   one shared engine against 4 private ones

Both parts use the same model, frame size (padded to the model's size multiple), batch
size, execution provider and intra-op threads, and the same noisy frames (a fixed
street-like pattern plus seeded Gaussian noise). The latency percentiles are those of
a saturated pipeline: from the moment appsrc accepts a frame to its arrival at the
sink, so they include the time frames wait in the element's queue (max-in-flight).
The pipeline's frames/s count the frames the model ran between the last warm-up frame's
arrival and the last frame's (the element's `inferred` count), so a batch that ran
frames out of order does not credit the window with frames that ran before it.

--batch-size 1,4,8 (a list, or the option repeated) measures each batch size side by
side in one process: the same model, frames and settings, a bare-loop session and a
fresh element per batch size, and each --repeat round goes over every batch size in
turn, so that load on the machine hits them alike. The report has one row per batch
size: bare and pipeline frames/s (medians over the rounds), pipe / bare, p50/p99
latency, the element's busy share and the frames per model run it really ran; the
JSON has the settings once and a `rows` array, one object per batch size. Frames and
warm-up round up to whole batches of each batch size. One value keeps the one-batch
report.

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

/// The bench's own options (the element's come from [`ElementOpts`]).
#[derive(clap::Args, Debug)]
pub struct Options {
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
    /// Rounds of (bare loop, pipeline), alternated (over every batch size in turn); the figures are the medians (steadier on a busy machine)
    #[arg(long, value_name = "N", default_value_t = 1)]
    repeat: usize,
    /// Streams in one process: N > 1 compares one shared engine (model-instance-id) with N private engines, instead of the bare loop
    #[arg(long, value_name = "N", default_value_t = 1)]
    streams: usize,
    /// Also write the results as JSON to FILE ('-': standard output, the table then goes to standard error)
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// `bench`'s options: its own, the element's, and the batch sizes: the element
/// options' `--batch-size` takes a list here (`1,4,8`, or the option repeated).
#[derive(Debug)]
pub struct Args {
    opts: Options,
    element: ElementOpts,
    /// The batch sizes given, in order (empty: none given; the element's batch-size).
    batch_sizes: Vec<u32>,
}

/// The element options' `--batch-size`, made a list of 1..=64.
fn batch_list_option(cmd: clap::Command) -> clap::Command {
    cmd.mut_arg("batch_size", |a| {
        a.value_name("N[,N...]")
            .value_delimiter(',')
            .action(ArgAction::Append)
            .value_parser(clap::value_parser!(u32).range(1..=MAX_BATCH as i64))
            .help(
                "Frames per inference call (1-64); a list (1,4,8) measures each batch size side by side, \
                 one report row each",
            )
    })
    .after_help(EXAMPLES)
}

impl FromArgMatches for Args {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(Args {
            // Read before ElementOpts takes the first of them as its batch-size.
            batch_sizes: m
                .get_many::<u32>("batch_size")
                .map(|v| v.copied().collect())
                .unwrap_or_default(),
            opts: Options::from_arg_matches(m)?,
            element: ElementOpts::from_arg_matches(m)?,
        })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        if let Some(v) = m.get_many::<u32>("batch_size") {
            self.batch_sizes = v.copied().collect();
        }
        self.opts.update_from_arg_matches(m)?;
        self.element.update_from_arg_matches(m)
    }
}

impl clap::Args for Args {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        // The bench's own options first in --help, as they always were.
        batch_list_option(ElementOpts::augment_args(Options::augment_args(cmd)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        batch_list_option(ElementOpts::augment_args_for_update(Options::augment_args_for_update(
            cmd,
        )))
    }
}

/// The batch sizes to measure, checked: each in 1..=64 (clap checks it too), none twice.
fn batch_sizes(given: &[u32]) -> Result<Vec<usize>> {
    let mut seen = HashSet::new();
    for &b in given {
        if !(1..=MAX_BATCH).contains(&b) {
            bail!("--batch-size {b}: a batch size is 1 to {MAX_BATCH} frames");
        }
        if !seen.insert(b) {
            bail!("--batch-size: {b} is given twice; give each batch size once");
        }
    }
    Ok(given.iter().map(|&b| b as usize).collect())
}

/// A denoiseseg element named `name` with the options applied, at batch size `batch`
/// when given (else the options' or the preset's).
fn make_element(args: &Args, name: &str, batch: Option<usize>) -> Result<gst::Element> {
    let ds = gst::ElementFactory::make("denoiseseg")
        .name(name)
        .build()
        .context("cannot create the denoiseseg element")?;
    args.element.apply(&ds)?;
    if let Some(t) = args.opts.threads {
        common::set_property_checked(&ds, "inference-threads", &t.to_string())?;
    }
    if let Some(b) = batch {
        common::set_property_checked(&ds, "batch-size", &b.to_string())?;
        check_in_flight(&ds, b)?;
    }
    Ok(ds)
}

/// A batch must fit in max-in-flight (as [`ElementOpts::apply`] checks for one batch size).
fn check_in_flight(ds: &gst::Element, batch: usize) -> Result<()> {
    let in_flight = ds.property::<u32>("max-in-flight") as usize;
    if in_flight < batch {
        bail!(
            "max-in-flight {in_flight} is less than batch-size {batch}: a batch could never fill \
             (give --max-in-flight {batch} or more, or a smaller --batch-size)"
        );
    }
    Ok(())
}

pub fn main(args: Args, verbose: u8) -> Result<ExitCode> {
    common::init_gstreamer()?;
    // It writes no media: Ctrl-C stops it at once, also in the bare loop.
    common::stop_at_once();
    let o = &args.opts;
    let (w, h) = common::parse_size(&o.size).map_err(|e| anyhow!("--size {}: {e}", o.size))?;
    let (w, h) = (w as usize, h as usize);
    if o.frames == 0 {
        bail!("--frames must be at least 1");
    }
    if o.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    if !(0.0..=255.0).contains(&o.noise_sigma) {
        bail!("--noise-sigma {} is outside 0..=255 (8-bit units)", o.noise_sigma);
    }
    if o.streams == 0 {
        bail!("--streams must be at least 1");
    }
    let given = batch_sizes(&args.batch_sizes)?;
    if o.streams > 1 && given.len() > 1 {
        bail!("--streams {} takes one --batch-size, not a list", o.streams);
    }
    let model_path = args.element.model_path().ok();
    common::check_report_path(
        o.json.as_deref(),
        &common::inputs_named(model_path.as_deref().map(|p| ("the model", p))),
    )?;
    if let (Some(t), Some(i)) = (o.threads, args.element.inference_threads) {
        if t != i {
            bail!("--threads {t} and --inference-threads {i} disagree; give one");
        }
    }
    let ds = make_element(&args, "ds", None)?;
    let s = bare::settings_of(&ds)?;
    let batches = if given.is_empty() { vec![s.batch.max(1)] } else { given };
    for &b in &batches {
        check_in_flight(&ds, b)?;
    }
    drop(ds);
    let spec = ModelSpec::load(&s.model)?;
    let m = spec.size_multiple.max(1);
    let (pw, ph) = (round_up(w, m), round_up(h, m));

    // The inputs: the same noisy frames for both parts and every batch size.
    let inputs = inputs::make(&spec, (w, h), o.noise_sigma, s.noise_level)?;
    let list = batches.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    if verbose > 0 {
        eprintln!(
            "model {} ({}), {w}x{h} padded to {pw}x{ph}, batch {list}, threads {}, provider {}",
            s.model.display(),
            spec.name,
            s.threads,
            s.provider
        );
    }

    if o.streams > 1 {
        let batch = batches[0];
        let frames = o.frames.div_ceil(batch) * batch;
        let warmup = o.warmup.div_ceil(batch) * batch;
        return streams::main(&args, &s, &spec, (w, h), (pw, ph), batch, warmup, frames, &inputs.rgb);
    }
    let make = |b: usize| make_element(&args, "ds", Some(b));
    let setup = sweep::Setup {
        settings: &s,
        spec: &spec,
        size: (w, h),
        padded: (pw, ph),
        frames: o.frames,
        warmup: o.warmup,
        repeat: o.repeat.max(1),
        inputs: &inputs,
        verbose,
        make: &make,
    };
    let rows = sweep::measure(&setup, &batches)?;
    let context = report::Context {
        setup: &setup,
        input_noise_sigma: o.noise_sigma,
    };
    let (table, json) = match rows.as_slice() {
        [row] => report::single(&context, row),
        rows => report::sweep(&context, rows),
    };
    common::emit_report(&table, &json, o.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        bench: Args,
    }

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn batch_size_takes_one_value_or_a_list() {
        let a = parse(&[]).unwrap();
        assert!(a.batch_sizes.is_empty());
        assert_eq!(a.element.batch_size, None);

        let a = parse(&["--batch-size", "4"]).unwrap();
        assert_eq!(a.batch_sizes, [4]);
        assert_eq!(a.element.batch_size, Some(4), "one value is the element's batch-size");

        let a = parse(&["--batch-size", "1,4,8", "--frames", "16"]).unwrap();
        assert_eq!(a.batch_sizes, [1, 4, 8]);
        assert_eq!(a.opts.frames, 16);
        assert_eq!(batch_sizes(&a.batch_sizes).unwrap(), [1, 4, 8]);

        let a = parse(&["--batch-size", "8", "--batch-size", "1"]).unwrap();
        assert_eq!(a.batch_sizes, [8, 1], "repeated: in the order given");
        assert_eq!(batch_sizes(&a.batch_sizes).unwrap(), [8, 1]);
    }

    #[test]
    fn absurd_batch_sizes_are_clear_errors() {
        for (args, what) in [
            (&["--batch-size", "0"][..], "0 is not in 1..=64"),
            (&["--batch-size", "1,65"], "65 is not in 1..=64"),
            (&["--batch-size", "four"], "invalid digit"),
            (&["--batch-size", "1,,4"], "empty string"),
            (&["--batch-size", ""], "empty string"),
            (&["--batch-size"], "a value is required"),
        ] {
            let e = parse(args).expect_err(&format!("{args:?} is refused"));
            assert!(e.to_string().contains(what), "{args:?}: {e}");
            assert!(e.to_string().contains("--batch-size"), "{args:?} names the option: {e}");
        }
        let e = parse(&["--batch-size", "-2"]).unwrap_err();
        assert!(e.to_string().contains("unexpected argument '-2'"), "{e}");
        let a = parse(&["--batch-size", "1,4,1"]).unwrap();
        let e = batch_sizes(&a.batch_sizes).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--batch-size: 1 is given twice; give each batch size once"
        );
        assert!(batch_sizes(&[0]).is_err());
        assert!(batch_sizes(&[65]).is_err());
    }
}
