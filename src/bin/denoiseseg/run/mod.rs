//! `denoiseseg run`: a video file, a URI or a camera through the element, to a file,
//! the screen or nowhere, with an optional lossless class-map output; or several of
//! them on one shared engine, to a grid mosaic and per-stream files.
//!
//! The files: `io` (sources, outputs and their checks), `single` (one input), `multi`
//! (several inputs on one engine) and `report` (the final report, as text and JSON);
//! this one holds the options and what both runs share (the models, the element
//! chain, the mosaic panels).
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use gst::prelude::*;

use crate::common::{self, quote, ElementOpts};

mod io;
mod multi;
mod report;
mod single;

/// The most inputs one run takes.
pub const MAX_INPUTS: usize = 16;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum View {
    /// The denoised frames
    #[default]
    Denoised,
    /// The class colours blended over the denoised frames
    Overlay,
    /// Input, denoised and overlay side by side, with a class legend (one input)
    Mosaic,
}

/// How an RTSP stream travels (rtspsrc's `protocols`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtspTransport {
    /// Interleaved in the RTSP connection: passes firewalls and NAT, nothing lost
    Tcp,
    /// RTP over UDP, unicast or multicast: the least delay, packets may be lost
    Udp,
    /// What the camera offers: UDP first, then TCP
    Auto,
}

const EXAMPLES: &str = "\
Examples:
  denoiseseg run dashcam.mp4 -o annotated.mp4 --view overlay
  denoiseseg run dashcam.mp4 -o mosaic.mkv --view mosaic --size 640x320
  denoiseseg run /dev/video0 -o screen
  denoiseseg run rtsp://192.168.1.20/stream -o rec.mp4 --rtsp-transport tcp --rtsp-latency 100
  denoiseseg run clip.mp4 --mask-output masks/%05d.png --noise-level 25
  denoiseseg run dashcam.mp4 --seg-model cityscapes.onnx -o out.mp4 --view overlay
  denoiseseg run cam1.mp4 cam2.mp4 rtsp://cam3/stream -o grid.mp4 --outputs out/cam{}.mp4
  denoiseseg run /dev/video0 /dev/video2 -o screen --view overlay --json report.json
Several inputs (up to 16) run as one pipeline, one element per input, all on one shared
engine (model-instance-id denoiseseg-run: one session, batches filled from every stream;
--batch-size defaults to the number of inputs, at most 8). -o shows or writes a grid
mosaic of --tile sized tiles (letterboxed, labelled with the stream number); --outputs
writes each stream to its own file, and --mask-output takes a pattern: {} is the stream
number, from 0 in the order given. Each stream ends on its own; the run ends when all
have. An input that fails (a camera unplugged, a corrupt file) ends its stream alone:
the others go on, and the run then exits 1, naming that input.
--seg-model chains two elements: --model (or the shipped default) denoises, then the
segmenter labels the denoised frames (two inferences per frame); the class maps of the
overlay, the mosaic and --mask-output are the segmenter's.
Live inputs (cameras, rtsp://, udp://, srt://, rtmp://) run leaky: when the model cannot
keep up, the oldest waiting frames are dropped (and counted), so the output stays close
to the camera; --no-leaky queues every frame instead, and the output falls behind.
Output folders must exist. Ctrl-C ends the stream cleanly: files are finalized, or,
before the first frame, not written at all; a second Ctrl-C aborts.";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// A video file, a URI (file://, rtsp://, http(s)://, udp://, ...) or a camera
    /// (/dev/videoN); up to 16 of them, on one shared engine
    #[arg(value_name = "INPUT", required = true, num_args = 1..)]
    pub inputs: Vec<String>,
    /// Output: an .mp4 or .mkv file, `screen`, or nothing (process only); with several
    /// inputs, a grid mosaic of them
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: Option<String>,
    /// Several inputs: each stream to its own .mp4 or .mkv file, {} in the pattern
    /// standing for the stream number from 0 (out/cam{}.mp4)
    #[arg(long, value_name = "PATTERN")]
    pub outputs: Option<String>,
    /// Several inputs: the size of each tile of the -o grid (letterboxed) [default: --size, else 640x360]
    #[arg(long, value_name = "WxH", value_parser = common::parse_size)]
    pub tile: Option<(u32, u32)>,
    /// Write the final report as JSON to FILE (`-`: standard output)
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// What the output shows
    #[arg(long, value_enum, default_value_t = View::Denoised)]
    pub view: View,
    /// Class-id maps, losslessly: a PNG pattern (masks/%05d.png) or an .mkv (FFV1); with
    /// several inputs, {} stands for the stream number (masks/cam{}.mkv)
    #[arg(long, value_name = "PATTERN.png|FILE.mkv")]
    pub mask_output: Option<String>,
    /// Scale the input to WIDTHxHEIGHT before the model (faster on large frames)
    #[arg(long, value_name = "WxH", value_parser = common::parse_size)]
    pub size: Option<(u32, u32)>,
    /// H.264 bitrate of file outputs in kbit/s (1-2048000)
    #[arg(long, value_name = "KBPS", default_value_t = 4000,
          value_parser = clap::value_parser!(u32).range(1..=common::MAX_H264_KBPS))]
    pub bitrate: u32,
    /// RTSP inputs: the jitter buffer in milliseconds (rtspsrc latency) [default: 200]
    #[arg(long, value_name = "MS")]
    pub rtsp_latency: Option<u32>,
    /// RTSP inputs: how the stream travels [default: auto]
    #[arg(long, value_enum, value_name = "TRANSPORT")]
    pub rtsp_transport: Option<RtspTransport>,
    /// Segment with this model after denoising with --model (or the shipped default): a
    /// second element on the denoised frames, with the same provider and thread options
    #[arg(long, value_name = "FILE.onnx")]
    pub seg_model: Option<PathBuf>,
    /// Print the GStreamer pipeline and exit
    #[arg(long)]
    pub print_pipeline: bool,
    #[command(flatten)]
    pub element: ElementOpts,
}

/// The Pango markup of the class legend: a coloured block and the name of each class.
pub fn legend_markup(classes: &[denoiseseg::model::ClassInfo]) -> String {
    classes
        .iter()
        .map(|c| {
            let [r, g, b] = c.color;
            format!(
                "<span foreground=\"#{r:02x}{g:02x}{b:02x}\">\u{2588}\u{2588}</span> {}",
                c.name.replace('&', "&amp;").replace('<', "&lt;")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A mosaic panel: frames scaled to `w`x`h` with square pixels (letterboxed where the
/// aspect differs).
fn panel(w: u32, h: u32) -> String {
    format!("videoconvert ! videoscale ! video/x-raw,width={w},height={h},pixel-aspect-ratio=1/1")
}

/// A panel's label, top left.
fn label(text: &str) -> String {
    format!(
        "textoverlay text={} valignment=top halignment=left font-desc=\"Sans 12\" shaded-background=true",
        quote(text)
    )
}

/// The three-panel mosaic: input | denoised | class overlay with legend, each panel
/// `w`x`h`. `input` is the tee with the (noisy) input, which also feeds the element
/// (named `d`) through a [`common::queue`]; `in_flight` is the element's
/// max-in-flight.
///
/// The compositor takes input frame N with denoised frame N, so the input panel's
/// queue holds every frame that can be on the way through the element: its queue, its
/// max-in-flight and the denoised panels' queues. A shorter one would stop the tee
/// (and so the element) before the element is full: batches would never fill. On a
/// live input that queue leaks its oldest frame rather than ever stopping the source.
pub fn mosaic_description(w: u32, h: u32, legend: &str, input: &str, in_flight: u32, live: bool) -> String {
    let q = common::queue();
    let ahead = format!(
        "queue max-size-buffers={} max-size-bytes=0 max-size-time=0{}",
        in_flight + 2 * common::QUEUE_FRAMES,
        if live { " leaky=downstream" } else { "" }
    );
    let panel = panel(w, h);
    format!(
        "compositor name=comp background=black sink_1::xpos={w} sink_2::xpos={x2} ! {{OUT}} \
         {input}. ! {ahead} ! {panel} ! {l0} ! comp.sink_0 \
         d. ! tee name=den den. ! {q} ! {panel} ! {l1} ! comp.sink_1 \
         den. ! {q} ! segoverlay ! {panel} ! {l2} \
         ! textoverlay text={legend} valignment=bottom halignment=right font-desc=\"Sans 8\" \
           shaded-background=true ! comp.sink_2",
        x2 = 2 * w,
        l0 = label("input"),
        l1 = label("denoised"),
        l2 = label("classes"),
        legend = quote(legend),
    )
}

/// The options of the segmenting element of a `--seg-model` chain: the first's (the
/// provider, device, threads, batching, preset), with the segmenter as the model;
/// checks that the chain makes sense.
pub fn seg_options(
    first: &ElementOpts,
    seg_model: &Path,
    first_spec: &denoiseseg::model::ModelSpec,
) -> Result<(ElementOpts, denoiseseg::model::ModelSpec)> {
    let path = common::resolve_model(Some(seg_model)).context("--seg-model")?;
    let spec = denoiseseg::model::ModelSpec::load(&path).context("--seg-model")?;
    if !spec.segments() {
        bail!(
            "--seg-model {}: the model does not segment (its sidecar names no labels or logits output)",
            path.display()
        );
    }
    if !first_spec.denoises() {
        bail!(
            "--seg-model: the first model {} does not denoise, so there is nothing to chain; give a denoising --model, or run the segmenter alone with --model {}",
            first_spec.path.display(),
            path.display()
        );
    }
    let opts = ElementOpts {
        model: Some(path),
        noise_level: None,
        ..first.clone()
    };
    Ok((opts, spec))
}

pub fn main(args: Args, verbose: u8) -> Result<ExitCode> {
    match args.inputs.len() {
        0 => bail!("give an input"),
        1 => single::main(args, verbose),
        n if n > MAX_INPUTS => bail!("{n} inputs: a run takes at most {MAX_INPUTS}"),
        _ => multi::main(args, verbose),
    }
}

/// The models of a run: the element's, and the segmenter's when `--seg-model` chains one.
struct Models {
    spec: denoiseseg::model::ModelSpec,
    /// The segmenting element's options and model.
    seg: Option<(ElementOpts, denoiseseg::model::ModelSpec)>,
}

impl Models {
    fn load(args: &Args) -> Result<Models> {
        let spec = denoiseseg::model::ModelSpec::load(&args.element.model_path()?)?;
        let seg = args
            .seg_model
            .as_deref()
            .map(|p| seg_options(&args.element, p, &spec))
            .transpose()?;
        Ok(Models { spec, seg })
    }

    /// The model whose class maps the outputs show: the segmenter when chained.
    fn shown(&self) -> &denoiseseg::model::ModelSpec {
        self.seg.as_ref().map_or(&self.spec, |(_, s)| s)
    }

    /// Checks that `--mask-output` has class maps to write.
    /// What shows or writes class maps needs a model that segments: `--mask-output`,
    /// `--view overlay` and `--view mosaic` (its classes panel).
    fn check_segments(&self, args: &Args) -> Result<()> {
        let option = match (&args.mask_output, args.view) {
            (Some(_), _) => "--mask-output",
            (None, View::Overlay) => "--view overlay",
            (None, View::Mosaic) => "--view mosaic",
            (None, View::Denoised) => return Ok(()),
        };
        if !self.shown().segments() {
            bail!("{option}: the model {} does not segment", self.shown().path.display());
        }
        Ok(())
    }

    /// The model, or both of the chain, for the report.
    fn name(&self) -> String {
        match &self.seg {
            Some((_, seg)) => format!("{} + {}", self.spec.name, seg.name),
            None => self.spec.name.clone(),
        }
    }

    /// Elements the chain holds a frame in at most: the element's `in_flight`, or with
    /// a segmenter both elements' and the queue between them.
    fn in_flight(&self, in_flight: u32) -> u32 {
        match self.seg {
            Some(_) => 2 * in_flight + common::QUEUE_FRAMES,
            None => in_flight,
        }
    }

    /// The element chain of one stream, up to its `output` pad: `name`, or with a
    /// segmenter `first` (denoises) ! queue ! `name` (segments its output and gives
    /// the class maps); `name` is the element a run reports on either way. `engine`:
    /// the model-instance-id the elements share an engine under (the segmenters under
    /// `engine-seg`).
    fn chain(&self, [first, name]: [&str; 2], leaky: bool, engine: Option<&str>, output: &str) -> String {
        let props = |suffix: &str| {
            let id = engine
                .map(|id| format!(" model-instance-id={id}{suffix}"))
                .unwrap_or_default();
            format!("{id}{}", if leaky { " leaky=true" } else { "" })
        };
        match &self.seg {
            Some(_) => format!(
                "denoiseseg name={first}{} output=denoised ! {} ! denoiseseg name={name}{} output={output}",
                props(""),
                common::queue(),
                props("-seg")
            ),
            None => format!("denoiseseg name={name}{} output={output}", props("")),
        }
    }

    /// Sets up the chain named `[first, name]` in `pipeline` (see [`Models::chain`])
    /// with `opts`; returns its last element and, with a segmenter, its first.
    fn configure(
        &self,
        pipeline: &gst::Pipeline,
        [first, name]: [&str; 2],
        opts: &ElementOpts,
        live: bool,
    ) -> Result<(gst::Element, Option<gst::Element>)> {
        let find = |n: &str| {
            pipeline
                .by_name(n)
                .ok_or_else(|| anyhow::anyhow!("no element {n} in the pipeline"))
        };
        let element = find(name)?;
        match &self.seg {
            Some((seg_opts, seg_spec)) => {
                let first = find(first)?;
                opts.apply_for_input(&first, live)?;
                let seg_opts = ElementOpts {
                    batch_size: opts.batch_size,
                    ..seg_opts.clone()
                };
                seg_opts
                    .apply_for_input(&element, live)
                    .with_context(|| format!("--seg-model {}", seg_spec.path.display()))?;
                // The segmenter sees denoised frames: their noise is estimated, not the input's.
                element.set_property("noise-level", -1.0f64);
                Ok((element, Some(first)))
            }
            None => {
                opts.apply_for_input(&element, live)?;
                Ok((element, None))
            }
        }
    }
}
