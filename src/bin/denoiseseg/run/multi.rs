//! `run` with several inputs: one pipeline, one branch per input, each with its own
//! element (or `--seg-model` chain), all on one shared engine ([`ENGINE_ID`]): one
//! session, batches filled from every stream.
//!
//!     input i ! decode [! scale] ! denoiseseg (model-instance-id) ! tee
//!         tee. ! queue ! scale to the tile ! label ! compositor.sink_i   (-o: the grid)
//!         tee. ! queue ! H.264 ! mux ! file                             (--outputs)
//!         (tee. ! queue ! fakesink when neither)
//!     denoiseseg.mask ! queue ! class-map file                           (--mask-output)
//!
//! Each stream ends on its own: its own files are finalized then, and the compositor
//! shows its tile black while the others go on; the pipeline ends when every stream
//! has. An error on any input ends the whole run (as with one input), naming the input
//! it came from.
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gst::prelude::*;

use super::io::{self, check_outputs, per_stream, MaskSink, Sink, Source};
use super::report::{self, EngineFigures, Report, StreamFigures};
use super::{label, panel, Args, Models, View};
use crate::common::{self, ElementOpts, OutputFile, Progress};

/// The model-instance-id the streams' elements share their engine under (with
/// `--seg-model`, the segmenters share `denoiseseg-run-seg`).
pub const ENGINE_ID: &str = "denoiseseg-run";

/// The tile of the grid when neither --tile nor --size gives one.
const DEFAULT_TILE: (u32, u32) = (640, 360);

/// The largest batch-size given by default (one frame per stream per model run).
const MAX_DEFAULT_BATCH: u32 = 8;

/// The element names of stream `i`: each starts `stream{i}-`, so that an error from
/// any of them, or from inside them (a decoder in a decodebin), names its input.
fn name(i: usize, what: &str) -> String {
    format!("stream{i}-{what}")
}

/// The stream an element belongs to: the first of it and its parents named by [`name`].
fn stream_of(object: &gst::Object) -> Option<usize> {
    let mut at = Some(object.clone());
    while let Some(o) = at {
        let index = o
            .name()
            .strip_prefix("stream")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(i, _)| i.parse().ok());
        if index.is_some() {
            return index;
        }
        at = o.parent();
    }
    None
}

/// Columns and rows of a near-square grid of `n` tiles (as many columns as rows, or
/// one more).
fn grid(n: usize) -> (usize, usize) {
    let cols = (1..=n).find(|c| c * c >= n).unwrap_or(1);
    (cols, n.div_ceil(cols))
}

/// The options with the default batch-size of `n` streams: one frame of each per model
/// run (at most [`MAX_DEFAULT_BATCH`], and no more than max-in-flight), unless
/// --batch-size, `--set batch-size=` or the preset gives one. `max_in_flight` is what
/// the options give.
fn with_default_batch(opts: &ElementOpts, n: usize, max_in_flight: u32) -> Result<ElementOpts> {
    let set = opts
        .set
        .iter()
        .any(|kv| kv.split_once('=').is_some_and(|(k, _)| k.trim() == "batch-size"));
    let preset = match &opts.config {
        Some(path) => denoiseseg::config::load_properties(path)?
            .iter()
            .any(|(k, _)| k == "batch-size"),
        None => false,
    };
    if opts.batch_size.is_some() || set || preset {
        return Ok(opts.clone());
    }
    let batch = (n as u32).min(MAX_DEFAULT_BATCH).min(max_in_flight);
    Ok(ElementOpts {
        batch_size: Some(batch),
        ..opts.clone()
    })
}

/// Remembers which stream the first error came from (see [`stream_of`]), as it is
/// posted; the run's own loop still gets every message.
fn watch_failures(pipeline: &gst::Pipeline) -> Arc<Mutex<Option<usize>>> {
    let failed = Arc::new(Mutex::new(None));
    let seen = failed.clone();
    if let Some(bus) = pipeline.bus() {
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Error(_) = msg.view() {
                if let Some(i) = msg.src().and_then(stream_of) {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(i);
                }
            }
            gst::BusSyncReply::Pass
        });
    }
    failed
}

/// What a run of several inputs reads and writes, parsed and checked before anything
/// is built.
struct Plan {
    sources: Vec<Source>,
    /// `-o`: the grid.
    mosaic: Sink,
    /// `--outputs`: one file per stream, or none.
    outputs: Vec<Sink>,
    /// `--mask-output`: one per stream, or none.
    masks: Vec<MaskSink>,
    tile: (u32, u32),
}

impl Plan {
    fn new(args: &Args) -> Result<Plan> {
        let n = args.inputs.len();
        if args.view == View::Mosaic {
            bail!("--view mosaic shows one input; with several, -o is a grid of --view denoised or overlay tiles");
        }
        if !args.inputs.iter().any(|i| io::is_rtsp(i)) {
            let given = [
                args.rtsp_latency.map(|_| "--rtsp-latency"),
                args.rtsp_transport.map(|_| "--rtsp-transport"),
            ];
            if let Some(option) = given.into_iter().flatten().next() {
                bail!("{option} applies to rtsp:// inputs only, and none is given");
            }
        }
        let sources = args
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let (latency, transport) = if io::is_rtsp(input) {
                    (args.rtsp_latency, args.rtsp_transport)
                } else {
                    (None, None)
                };
                Source::parse(input, latency, transport).with_context(|| format!("input {i}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mosaic = Sink::parse(args.output.as_deref())?;
        let outputs = match &args.outputs {
            Some(pattern) => per_stream("--outputs", pattern, n, "out/cam{}.mp4")?
                .iter()
                .map(|p| Sink::file(p).with_context(|| format!("--outputs {pattern}")))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let masks = match &args.mask_output {
            Some(pattern) => per_stream("--mask-output", pattern, n, "masks/cam{}.mkv")?
                .iter()
                .map(|p| MaskSink::parse(p))
                .collect::<Result<Vec<_>>>()?,
            None => Vec::new(),
        };
        let labelled = |option: &str, i: usize| format!("{option} (stream {i})");
        let mut sinks = vec![("-o".to_string(), &mosaic)];
        sinks.extend(outputs.iter().enumerate().map(|(i, s)| (labelled("--outputs", i), s)));
        let mask_list: Vec<_> = masks
            .iter()
            .enumerate()
            .map(|(i, m)| (labelled("--mask-output", i), m))
            .collect();
        check_outputs(&sources, &sinks, &mask_list)?;
        common::check_report_path(args.json.as_deref())?;
        let tile = args.tile.or(args.size).unwrap_or(DEFAULT_TILE);
        if let Sink::File(..) = mosaic {
            common::check_h264_size("--tile", tile)?;
        }
        if let (false, Some(size)) = (outputs.is_empty(), args.size) {
            common::check_h264_size("--size", size)?;
        }
        Ok(Plan {
            sources,
            mosaic,
            outputs,
            masks,
            tile,
        })
    }

    fn grid(&self) -> bool {
        !matches!(self.mosaic, Sink::None)
    }

    /// The pipeline: the grid's compositor and its output, then each stream's branch
    /// (see the module's description). `leaky`: each stream's element is.
    fn description(&self, args: &Args, models: &Models, leaky: &[bool]) -> String {
        let (tw, th) = self.tile;
        let q = common::queue();
        let mut desc = String::new();
        let labels = gst::ElementFactory::find("textoverlay").is_some();
        if self.grid() {
            if !labels {
                eprintln!("note: textoverlay (GStreamer's pango plugin) is missing: the tiles are not labelled");
            }
            let (cols, rows) = grid(self.sources.len());
            let pads: String = (0..self.sources.len())
                .map(|i| {
                    let (x, y) = ((i % cols) as u32 * tw, (i / cols) as u32 * th);
                    format!(" sink_{i}::xpos={x} sink_{i}::ypos={y}")
                })
                .collect();
            let live = self.sources.iter().any(Source::is_live);
            desc += &format!(
                "compositor name=grid background=black{pads} ! video/x-raw,width={},height={} ! {q} ! {}",
                cols as u32 * tw,
                rows as u32 * th,
                self.mosaic.description(args.bitrate, live, common::H264_MUX)
            );
        }
        let scale = match args.size {
            Some((w, h)) => format!(" ! videoscale ! video/x-raw,width={w},height={h}"),
            None => String::new(),
        };
        let output = if args.view == View::Overlay {
            "overlay"
        } else {
            "denoised"
        };
        for (i, source) in self.sources.iter().enumerate() {
            let chain = models.chain([&name(i, "den"), &name(i, "d")], leaky[i], Some(ENGINE_ID), output);
            let tee = name(i, "tee");
            desc += &format!(
                " {}{scale} ! videoconvert ! {chain} ! tee name={tee}",
                source.description(Some(&name(i, "src")), leaky[i])
            );
            if self.grid() {
                let text = if labels {
                    format!(" ! {}", label(&i.to_string()))
                } else {
                    String::new()
                };
                desc += &format!(" {tee}. ! {q} ! {}{text} ! grid.sink_{i}", panel(tw, th));
            }
            match self.outputs.get(i) {
                Some(sink) => {
                    let file = sink.description(args.bitrate, source.is_live(), &name(i, "out"));
                    desc += &format!(" {tee}. ! {q} ! {file}");
                }
                None if !self.grid() => desc += &format!(" {tee}. ! {q} ! fakesink sync=false"),
                None => {}
            }
            if let Some(mask) = self.masks.get(i) {
                desc += &format!(" {}", mask.description(&name(i, "d"), &name(i, "masks")));
            }
        }
        desc.trim_start().to_string()
    }

    /// The files the pipeline writes: the grid's, and each stream's.
    fn watch(&self, pipeline: &gst::Pipeline) -> Result<(Option<OutputFile>, Vec<Vec<OutputFile>>)> {
        let mosaic = match &self.mosaic {
            Sink::File(p, _) => Some(OutputFile::watch(pipeline, common::H264_MUX, p, false)?),
            _ => None,
        };
        let mut streams = Vec::new();
        for i in 0..self.sources.len() {
            let mut files = Vec::new();
            if let Some(Sink::File(p, _)) = self.outputs.get(i) {
                files.push(OutputFile::watch(pipeline, &name(i, "out"), p, false)?);
            }
            if let Some(mask) = self.masks.get(i) {
                files.push(mask.watch(pipeline, &name(i, "masks"))?);
            }
            streams.push(files);
        }
        Ok((mosaic, streams))
    }
}

pub fn main(args: Args, verbose: u8) -> Result<ExitCode> {
    let plan = Plan::new(&args)?;
    common::init_gstreamer()?;
    let live: Vec<bool> = plan.sources.iter().map(Source::is_live).collect();
    // The element's settings, checked on a scratch element before anything is built:
    // first as given, for max-in-flight, then with the default batch, on each stream
    // (live ones run leaky unless told otherwise).
    let in_flight = args.element.check()?.property::<u32>("max-in-flight");
    let opts = with_default_batch(&args.element, live.len(), in_flight)?;
    let mut leaky = Vec::new();
    for &l in &live {
        let settings = common::scratch_element()?;
        io::configure(&settings, &opts, l)?;
        leaky.push(settings.property::<bool>("leaky"));
    }
    let models = Models::load(&args)?;
    models.check_masks(args.mask_output.as_deref())?;

    let desc = plan.description(&args, &models, &leaky);
    if args.print_pipeline || verbose > 0 {
        eprintln!("pipeline: {desc}");
        if args.print_pipeline {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let pipeline = super::launch(&desc)?;
    let mut chains = Vec::new();
    for (i, &l) in live.iter().enumerate() {
        let chain = models
            .configure(&pipeline, [&name(i, "den"), &name(i, "d")], &opts, l)
            .with_context(|| format!("input {i}"))?;
        chains.push(chain);
    }
    if live.iter().zip(&leaky).any(|(&l, &k)| l && k) {
        eprintln!("live inputs: frames are dropped when the model cannot keep up (--no-leaky to queue them instead)");
    }
    let (mosaic_file, stream_files) = plan.watch(&pipeline)?;

    let failed = watch_failures(&pipeline);
    let elements: Vec<gst::Element> = chains.iter().map(|(e, _)| e.clone()).collect();
    let started = Instant::now();
    let progress = if live.contains(&true) {
        Progress::Live
    } else {
        Progress::File
    };
    let ending = common::run_streams(&pipeline, &elements, progress).map_err(|e| {
        match *failed.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(i) => e.context(format!("input {i} ({})", args.inputs[i])),
            None => e,
        }
    })?;
    let elapsed = started.elapsed();
    let mosaic = mosaic_file.map(|f| report::conclude(std::slice::from_ref(&f), ending).remove(0));
    let streams: Vec<StreamFigures> = chains
        .iter()
        .zip(&stream_files)
        .zip(&args.inputs)
        .map(|(((element, first), files), input)| {
            StreamFigures::of(input, element, first.as_ref(), report::conclude(files, ending))
        })
        .collect();
    let engine_id = match models.seg {
        Some(_) => format!("{ENGINE_ID}-seg"),
        None => ENGINE_ID.to_string(),
    };
    Report {
        streams,
        mosaic,
        engine: EngineFigures::of(&elements, Some(&engine_id)),
        model: models.name(),
        elapsed,
        ending,
    }
    .finish(args.json.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_near_square() {
        assert_eq!(grid(2), (2, 1));
        assert_eq!(grid(3), (2, 2));
        assert_eq!(grid(4), (2, 2));
        assert_eq!(grid(5), (3, 2));
        assert_eq!(grid(9), (3, 3));
        assert_eq!(grid(10), (4, 3));
        assert_eq!(grid(16), (4, 4));
    }

    #[test]
    fn default_batch_is_one_frame_per_stream_unless_given() {
        let opts = ElementOpts::default();
        assert_eq!(with_default_batch(&opts, 3, 8).unwrap().batch_size, Some(3));
        assert_eq!(with_default_batch(&opts, 12, 8).unwrap().batch_size, Some(8));
        assert_eq!(with_default_batch(&opts, 6, 4).unwrap().batch_size, Some(4));
        let given = ElementOpts {
            batch_size: Some(2),
            ..ElementOpts::default()
        };
        assert_eq!(with_default_batch(&given, 6, 8).unwrap().batch_size, Some(2));
        let set = ElementOpts {
            set: vec!["batch-size=5".into()],
            ..ElementOpts::default()
        };
        assert_eq!(with_default_batch(&set, 6, 8).unwrap().batch_size, None);
    }
}
