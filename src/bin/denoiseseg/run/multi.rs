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
//! has. An error of one input (its source or decoder: a camera unplugged, an RTSP
//! server gone, a corrupt file) ends that stream alone, the same way ([`Failures`]):
//! the others go on, the report gives the stream's error, and the run then fails
//! (exit code 1, as an error with one input), naming the input. Any other error (the
//! shared engine's, the grid's, an encoder's or a file's) ends the whole run, naming
//! the input when it came from one stream's branch.
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gst::prelude::*;

use super::io::{self, check_outputs, per_stream, MaskSink, Sink, Source};
use super::report::{self, EngineFigures, Report, StreamFigures};
use super::{label, panel, Args, Models, View};
use crate::common::{self, ElementOpts, OnError, OutputFile, Progress};

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

/// The stream and the rest of an element name given by [`name`] (`stream2-src`: 2,
/// `src`).
fn parse_name(name: &str) -> Option<(usize, &str)> {
    let (i, what) = name.strip_prefix("stream")?.split_once('-')?;
    Some((i.parse().ok()?, what))
}

/// A stream, and the part of it an element is (the rest of its [`name`]).
type Origin = (usize, String);

/// The first of `object` and its parents named by [`name`]: its stream and the rest of
/// its name.
fn named_part(object: &gst::Object) -> Option<Origin> {
    let mut at = Some(object.clone());
    while let Some(o) = at {
        if let Some((i, what)) = parse_name(&o.name()) {
            return Some((i, what.to_string()));
        }
        at = o.parent();
    }
    None
}

/// Whether the part of a stream named `what` (see [`named_part`]) is its input: its
/// source or its decoder (or an element inside them), where an error ends that stream
/// alone. Anything else of a stream (its element, which shares the engine, its encoder
/// and files) is not.
fn is_input(what: &str) -> bool {
    INPUT_PARTS.contains(&what)
}

/// The names (after `stream{i}-`) of the elements of an input: see [`Source::description`].
const INPUT_PARTS: &[&str] = &["src", "src-dec"];

/// The names (after `stream{i}-`) of a stream's elements on the shared engine: its
/// denoiseseg element, and the denoising one before it in a `--seg-model` chain.
const ENGINE_PARTS: &[&str] = &["d", "den"];

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

/// Locks `m`, poisoned or not (what it guards stays consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The application message that says a failed stream's input is out of the pipeline.
const STREAM_ENDED: &str = "denoiseseg-run-stream-ended";

/// The streams that ended with an error of their input, while the others go on.
///
/// On the first error from stream i's input (see [`is_input`]), its source (and
/// decoder) are stopped and taken out of the pipeline, and EOS goes into its element
/// as if the input had ended: the element leaves the shared engine, the stream's files
/// are finalized and its tile of the grid turns black, as when a stream ends.
/// GStreamer posts several errors for one failure: later ones from the same stream
/// only give a better reason (as [`common::best_error`] does). Any other error ends
/// the run.
struct Failures {
    pipeline: gst::Pipeline,
    /// Where each error message came from ([`named_part`] of its source), noted as it
    /// is posted: an input being stopped takes its elements apart (a uridecodebin
    /// drops its decoders), so by the time the message is read they may no longer
    /// tell. By the address of the message.
    origins: Arc<Mutex<HashMap<usize, Option<Origin>>>>,
    /// Each stream's input elements (source, decoder), and the first element of its
    /// chain, where EOS goes.
    inputs: Vec<(Vec<gst::Element>, gst::Element)>,
    /// Each stream's error, once it failed; `true` while it is GStreamer's generic
    /// "internal data stream error", which often comes before the real cause.
    errors: Vec<Option<(anyhow::Error, bool)>>,
    /// The stream of an error that ended the run.
    fatal: Option<usize>,
}

impl Failures {
    fn new(pipeline: &gst::Pipeline, heads: &[gst::Element]) -> Failures {
        let inputs = heads
            .iter()
            .enumerate()
            .map(|(i, head)| {
                let parts = INPUT_PARTS
                    .iter()
                    .filter_map(|what| pipeline.by_name(&name(i, what)))
                    .collect();
                (parts, head.clone())
            })
            .collect();
        let origins = Arc::new(Mutex::new(HashMap::new()));
        if let Some(bus) = pipeline.bus() {
            let noted = origins.clone();
            bus.set_sync_handler(move |_, msg| {
                if let gst::MessageView::Error(_) = msg.view() {
                    let origin = msg.src().and_then(named_part);
                    lock(&noted).insert(msg.as_ptr() as usize, origin);
                }
                gst::BusSyncReply::Pass
            });
        }
        Failures {
            pipeline: pipeline.clone(),
            origins,
            inputs,
            errors: heads.iter().map(|_| None).collect(),
            fatal: None,
        }
    }

    /// What the run does with `msg` (see [`common::run_streams_with`]), on the main
    /// thread.
    fn on_message(&mut self, msg: &gst::Message) -> OnError {
        match msg.view() {
            gst::MessageView::Error(e) => {
                let noted = lock(&self.origins).remove(&(msg.as_ptr() as usize));
                let origin = noted.unwrap_or_else(|| msg.src().and_then(named_part));
                self.on_error(e, origin)
            }
            gst::MessageView::Application(a) if a.structure().is_some_and(|s| s.name() == STREAM_ENDED) => {
                self.resume();
                OnError::GoOn
            }
            _ => OnError::GoOn,
        }
    }

    /// `origin`: the [`named_part`] the error came from.
    fn on_error(&mut self, e: &gst::message::Error, origin: Option<Origin>) -> OnError {
        let generic = e.error().matches(gst::StreamError::Failed);
        let stream = origin.as_ref().map(|(i, _)| *i);
        if let Some(Some((error, was_generic))) = stream.map(|i| &mut self.errors[i]) {
            // That stream ended already: this is one more message of its failure.
            if *was_generic && !generic {
                *error = common::error_of(e);
                *was_generic = false;
            }
            self.resume();
            return OnError::GoOn;
        }
        match origin {
            Some((i, what)) if is_input(&what) => {
                self.errors[i] = Some((common::error_of(e), generic));
                self.end_stream(i);
                OnError::GoOn
            }
            // The elements of the shared engine ("d", "den" of a chain): what fails there
            // (the model, the provider, a run) fails every stream, whichever posted it.
            Some((_, what)) if ENGINE_PARTS.contains(&what.as_str()) => OnError::End,
            _ => {
                self.fatal = stream;
                OnError::End
            }
        }
    }

    /// Asks the pipeline for PLAYING again: an error posted while it was starting
    /// (prerolling) fails its start, and it would wait for ever.
    fn resume(&self) {
        let _ = self.pipeline.set_state(gst::State::Playing);
    }

    /// Stops stream `i`'s input, takes it out of the pipeline and sends EOS into the
    /// rest of its branch, off this thread (stopping a source waits for its streaming
    /// thread, which may be waiting for the engine, or for the sinks to start); then
    /// posts [`STREAM_ENDED`], on which the main thread [`resume`](Self::resume)s.
    fn end_stream(&self, i: usize) {
        let (parts, head) = self.inputs[i].clone();
        for part in &parts {
            // The pipeline's own state changes leave it alone from now on.
            part.set_locked_state(true);
        }
        self.pipeline.call_async(move |pipeline| {
            for part in &parts {
                let _ = part.set_state(gst::State::Null);
                // Out of the pipeline too: one still starting (a decodebin that has
                // not found its streams yet) would otherwise hold up the pipeline's
                // start for ever.
                let _ = pipeline.remove(part);
            }
            if let Some(pad) = head.static_pad("sink") {
                // An input that failed before its first frame never started its
                // stream: the branch gets what EOS must follow.
                if pad.sticky_event::<gst::event::StreamStart>(0).is_none() {
                    pad.send_event(gst::event::StreamStart::new(&format!("{}-failed", head.name())));
                }
                if pad.sticky_event::<gst::event::Segment>(0).is_none() {
                    pad.send_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
                }
                pad.send_event(gst::event::Eos::new());
            }
            let ended = gst::Structure::builder(STREAM_ENDED).field("stream", i as u32).build();
            let _ = pipeline.post_message(gst::message::Application::new(ended));
        });
    }

    /// Each stream's error, if it failed.
    fn into_errors(self) -> Vec<Option<anyhow::Error>> {
        self.errors.into_iter().map(|e| e.map(|(e, _)| e)).collect()
    }
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
        let files = check_outputs(&sources, &sinks, &mask_list)?;
        common::check_report_path(args.json.as_deref(), &files)?;
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
    let checked = args.element.check()?;
    if let Some(id) = checked
        .property::<Option<String>>("model-instance-id")
        .filter(|id| !id.is_empty())
    {
        bail!(
            "model-instance-id {id} (--set or the preset): a run of several inputs shares one engine under \
             its own id ({ENGINE_ID}); leave it unset"
        );
    }
    let in_flight = checked.property::<u32>("max-in-flight");
    let opts = with_default_batch(&args.element, live.len(), in_flight)?;
    let mut leaky = Vec::new();
    let mut file_not_leaky = false;
    for &l in &live {
        let settings = common::scratch_element()?;
        file_not_leaky |= opts.apply_for_input(&settings, l)?;
        leaky.push(settings.property::<bool>("leaky"));
    }
    if file_not_leaky {
        eprintln!("{}", io::FILE_NOT_LEAKY);
    }
    let models = Models::load(&args)?;
    models.check_segments(&args)?;

    let desc = plan.description(&args, &models, &leaky);
    if args.print_pipeline || verbose > 0 {
        eprintln!("pipeline: {desc}");
        if args.print_pipeline {
            return Ok(ExitCode::SUCCESS);
        }
    }
    plan.mosaic.check_display()?;
    let pipeline = common::parse_pipeline(&desc)?;
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

    let elements: Vec<gst::Element> = chains.iter().map(|(e, _)| e.clone()).collect();
    let heads: Vec<gst::Element> = chains
        .iter()
        .map(|(e, first)| first.clone().unwrap_or_else(|| e.clone()))
        .collect();
    let mut failures = Failures::new(&pipeline, &heads);
    let started = Instant::now();
    let progress = if live.contains(&true) {
        Progress::Live
    } else {
        Progress::File
    };
    let ending =
        common::run_streams_with(&pipeline, &elements, progress, &mut |m| failures.on_message(m)).map_err(|e| {
            match failures.fatal {
                Some(i) => e.context(format!("input {i} ({})", args.inputs[i])),
                None => e,
            }
        })?;
    let errors = failures.into_errors();
    let elapsed = started.elapsed();
    let mosaic = mosaic_file.map(|f| report::conclude(std::slice::from_ref(&f), ending).remove(0));
    let streams: Vec<StreamFigures> = chains
        .iter()
        .zip(&stream_files)
        .zip(&args.inputs)
        .zip(errors)
        .map(|((((element, first), files), input), error)| StreamFigures {
            error,
            ..StreamFigures::of(input, element, first.as_ref(), report::conclude(files, ending))
        })
        .collect();
    Report {
        streams,
        mosaic,
        engine: EngineFigures::of(&elements),
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
    fn element_names_tell_the_stream_and_whether_it_is_the_input() {
        assert_eq!(parse_name(&name(3, "src")), Some((3, "src")));
        assert_eq!(parse_name(&name(12, "src-dec")), Some((12, "src-dec")));
        assert_eq!(parse_name(&name(0, "d")), Some((0, "d")));
        // GStreamer's own names.
        assert_eq!(parse_name("streamsynchronizer0"), None);
        assert_eq!(parse_name("stream-x"), None);
        assert_eq!(parse_name("typefind"), None);
        // Only an input's error ends its stream alone: not the element's (the engine
        // it shares), nor its outputs'.
        assert!(is_input("src") && is_input("src-dec"));
        for what in ["d", "den", "tee", "out", "masks"] {
            assert!(!is_input(what), "{what}");
        }
    }

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
