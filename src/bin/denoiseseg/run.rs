//! `denoiseseg run`: a video file, a URI or a camera through the element, to a file,
//! the screen or nowhere, with an optional lossless class-map output.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gst::prelude::*;

use crate::common::{self, quote, ElementOpts, Ending, OutputFile, Progress};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum View {
    /// The denoised frames
    #[default]
    Denoised,
    /// The class colours blended over the denoised frames
    Overlay,
    /// Input, denoised and overlay side by side, with a class legend
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

/// rtspsrc's jitter buffer for RTSP inputs, when --rtsp-latency is not given (rtspsrc's
/// own default, 2000 ms, is long for a live view).
const DEFAULT_RTSP_LATENCY_MS: u32 = 200;

/// URI schemes of live streams: the source runs in real time whatever the app does.
const LIVE_SCHEMES: &[&str] = &["rtsp", "rtsps", "rtspt", "rtspu", "udp", "rtp", "srt", "rtmp", "rtmps"];

const EXAMPLES: &str = "\
Examples:
  denoiseseg run dashcam.mp4 -o annotated.mp4 --view overlay
  denoiseseg run dashcam.mp4 -o mosaic.mkv --view mosaic --size 640x320
  denoiseseg run /dev/video0 -o screen
  denoiseseg run rtsp://192.168.1.20/stream -o rec.mp4 --rtsp-transport tcp --rtsp-latency 100
  denoiseseg run clip.mp4 --mask-output masks/%05d.png --noise-level 25
  denoiseseg run dashcam.mp4 --seg-model cityscapes.onnx -o out.mp4 --view overlay
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
    /// A video file, a URI (file://, rtsp://, http(s)://, udp://, ...) or a camera (/dev/videoN)
    #[arg(value_name = "INPUT")]
    pub input: String,
    /// Output: an .mp4 or .mkv file, `screen`, or nothing (process only)
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: Option<String>,
    /// What the output shows
    #[arg(long, value_enum, default_value_t = View::Denoised)]
    pub view: View,
    /// Class-id maps, losslessly: a PNG pattern (masks/%05d.png) or an .mkv (FFV1)
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

/// Where the frames come from.
enum Source {
    File(PathBuf),
    /// A URI that uridecodebin reads; `live` for the schemes of [`LIVE_SCHEMES`].
    Uri {
        uri: String,
        live: bool,
    },
    Rtsp {
        uri: String,
        latency_ms: u32,
        transport: RtspTransport,
    },
    Camera(PathBuf),
}

impl Source {
    fn parse(input: &str, rtsp_latency: Option<u32>, rtsp_transport: Option<RtspTransport>) -> Result<Source> {
        let scheme = input.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let source = if scheme.as_deref().is_some_and(|s| s.starts_with("rtsp")) {
            Source::Rtsp {
                uri: input.to_string(),
                latency_ms: rtsp_latency.unwrap_or(DEFAULT_RTSP_LATENCY_MS),
                transport: rtsp_transport.unwrap_or(RtspTransport::Auto),
            }
        } else if input.starts_with("/dev/video") {
            let dev = PathBuf::from(input);
            if !dev.exists() {
                bail!("no camera at {input}");
            }
            Source::Camera(dev)
        } else if let Some(scheme) = scheme.filter(|s| s != "file") {
            Source::Uri {
                uri: input.to_string(),
                live: LIVE_SCHEMES.contains(&scheme.as_str()),
            }
        } else {
            let path = Path::new(input.strip_prefix("file://").unwrap_or(input));
            if !path.is_file() {
                bail!("no such file: {}", path.display());
            }
            Source::File(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()))
        };
        if !matches!(source, Source::Rtsp { .. }) {
            let given = [
                rtsp_latency.map(|_| "--rtsp-latency"),
                rtsp_transport.map(|_| "--rtsp-transport"),
            ];
            if let Some(option) = given.into_iter().flatten().next() {
                bail!("{option} applies to rtsp:// inputs only, not {input}");
            }
        }
        Ok(source)
    }

    fn is_live(&self) -> bool {
        match self {
            Source::Camera(_) | Source::Rtsp { .. } => true,
            Source::Uri { live, .. } => *live,
            Source::File(_) => false,
        }
    }

    /// The source and its decoder, up to raw video. `leaky`: the element drops what it
    /// cannot take, so an RTSP jitter buffer may drop what is older than its latency
    /// too (it would keep it otherwise, without bound, while its decoder lags).
    fn description(&self, leaky: bool) -> String {
        match self {
            Source::File(p) => format!("uridecodebin uri={}", quote(&format!("file://{}", p.display()))),
            Source::Uri { uri, .. } => format!("uridecodebin uri={}", quote(uri)),
            Source::Rtsp {
                uri,
                latency_ms,
                transport,
            } => format!(
                "rtspsrc location={} latency={latency_ms}{} drop-on-latency={leaky} \
                 ! application/x-rtp,media=video ! decodebin",
                quote(uri),
                match transport {
                    RtspTransport::Tcp => " protocols=tcp",
                    RtspTransport::Udp => " protocols=udp+udp-mcast",
                    RtspTransport::Auto => "",
                }
            ),
            Source::Camera(d) => format!("v4l2src device={}", quote(&d.display().to_string())),
        }
    }
}

/// Sets up the element for this run: on a live input leaky (so that the model's pace
/// never holds up the source), unless the preset or the options say otherwise; then
/// the preset and the options.
fn configure(element: &gst::Element, opts: &ElementOpts, live: bool) -> Result<()> {
    if live {
        element.set_property("leaky", true);
    }
    opts.apply(element)
}

/// Where the output goes.
enum Sink {
    None,
    Screen,
    File(PathBuf, &'static str),
}

impl Sink {
    fn parse(output: Option<&str>) -> Result<Sink> {
        let Some(o) = output else { return Ok(Sink::None) };
        if o == "screen" {
            return Ok(Sink::Screen);
        }
        let path = PathBuf::from(o);
        let mux = match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("mp4") | Some("mov") => "mp4mux",
            Some("mkv") => "matroskamux",
            _ => bail!("output {o}: give an .mp4 or .mkv file, or `screen`"),
        };
        Ok(Sink::File(path, mux))
    }

    /// On a live input, the screen shows each frame as it comes (sync=false) rather
    /// than dropping those that come later than the latency it was told.
    fn description(&self, bitrate: u32, live: bool) -> String {
        match self {
            Sink::None => "fakesink sync=false".into(),
            Sink::Screen => format!("videoconvert ! autovideosink{}", if live { " sync=false" } else { "" }),
            Sink::File(p, mux) => common::h264_file(p, mux, bitrate, live),
        }
    }
}

/// The element that writes the class maps: the muxer, or multifilesink.
const MASK_WRITER: &str = "mask_writer";

/// Where the class maps go (`--mask-output`).
enum MaskSink {
    /// One lossless FFV1 stream in Matroska.
    Mkv(PathBuf),
    /// One PNG per frame, named by a printf pattern.
    Png(PathBuf),
}

impl MaskSink {
    fn parse(mask: &str) -> Result<MaskSink> {
        let path = PathBuf::from(mask);
        if mask.ends_with(".mkv") {
            Ok(MaskSink::Mkv(path))
        } else if mask.ends_with(".png") && mask.contains('%') {
            Ok(MaskSink::Png(path))
        } else {
            bail!("--mask-output {mask}: give a PNG pattern such as masks/%05d.png, or an .mkv file")
        }
    }

    /// The class-map branch, linked from the element's `mask` pad. Its sink, as the
    /// main output's, takes no part in preroll (see [`common::file_sink`]), so this
    /// branch needs no more than the usual queue whatever the other output's encoder
    /// holds.
    fn description(&self) -> String {
        let q = common::queue();
        match self {
            MaskSink::Mkv(p) => format!(
                "d.mask ! {q} ! avenc_ffv1 ! matroskamux name={MASK_WRITER} ! {}",
                common::file_sink(p)
            ),
            MaskSink::Png(p) => format!(
                "d.mask ! {q} ! pngenc compression-level=1 ! multifilesink name={MASK_WRITER} location={} async=false",
                quote(&p.display().to_string())
            ),
        }
    }

    fn watch(&self, pipeline: &gst::Pipeline) -> Result<OutputFile> {
        match self {
            MaskSink::Mkv(p) => OutputFile::watch(pipeline, MASK_WRITER, p, false),
            MaskSink::Png(p) => OutputFile::watch(pipeline, MASK_WRITER, p, true),
        }
    }
}

/// Checks the files a run writes before anything starts: their folders exist, and no
/// two of them, nor one of them and the input, are the same file.
fn check_outputs(source: &Source, sink: &Sink, mask: Option<&MaskSink>) -> Result<()> {
    let mut files = Vec::new();
    if let Source::File(p) = source {
        files.push((format!("the input {}", p.display()), p.clone()));
    }
    if let Sink::File(p, _) = sink {
        files.push((format!("-o {}", p.display()), common::check_output(p)?));
    }
    match mask {
        Some(MaskSink::Mkv(p)) => files.push((format!("--mask-output {}", p.display()), common::check_output(p)?)),
        Some(MaskSink::Png(p)) => {
            common::check_output(p)?;
        }
        None => {}
    }
    common::check_distinct(&files)
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
    let panel = format!("videoconvert ! videoscale ! video/x-raw,width={w},height={h},pixel-aspect-ratio=1/1");
    let label = |text: &str| {
        format!(
            "textoverlay text={} valignment=top halignment=left font-desc=\"Sans 12\" shaded-background=true",
            quote(text)
        )
    };
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

/// The name of the first (denoising) element of a `--seg-model` chain.
const FIRST: &str = "denoiser";

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
            "--seg-model: the first model {} does not denoise, so there is nothing to chain; give a              denoising --model, or run the segmenter alone with --model {}",
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
    let source = Source::parse(&args.input, args.rtsp_latency, args.rtsp_transport)?;
    let sink = Sink::parse(args.output.as_deref())?;
    let mask = args.mask_output.as_deref().map(MaskSink::parse).transpose()?;
    check_outputs(&source, &sink, mask.as_ref())?;
    if let (Sink::File(..), Some(size)) = (&sink, args.size) {
        common::check_h264_size("--size", size)?;
    }
    let live = source.is_live();
    common::init_gstreamer()?;
    // The element's settings, checked on a scratch element before anything is built.
    let settings = common::scratch_element()?;
    configure(&settings, &args.element, live)?;
    let leaky = settings.property::<bool>("leaky");
    let model = args.element.model_path()?;
    let spec = denoiseseg::model::ModelSpec::load(&model)?;
    let seg = args
        .seg_model
        .as_deref()
        .map(|p| seg_options(&args.element, p, &spec))
        .transpose()?;
    // The model whose class maps the outputs show: the segmenter when chained.
    let (seg_model, seg_spec) = match &seg {
        Some((opts, seg_spec)) => (opts.model_path()?, seg_spec),
        None => (model.clone(), &spec),
    };

    let scale = match args.size {
        Some((w, h)) => format!(" ! videoscale ! video/x-raw,width={w},height={h}"),
        None => String::new(),
    };
    let out = sink.description(args.bitrate, live);
    let head = format!("{}{} ! videoconvert", source.description(leaky), scale);
    let leaky_prop = if leaky { " leaky=true" } else { "" };
    // Chained: the first element (den) denoises, the last (d) segments its output and
    // gives the class maps; d is the element the run reports on either way.
    let denoiseseg = match &seg {
        Some(_) => format!(
            "denoiseseg name={FIRST}{leaky_prop} output=denoised ! {} ! denoiseseg name=d{leaky_prop}",
            common::queue()
        ),
        None => format!("denoiseseg name=d{leaky_prop}"),
    };
    let mut desc = match args.view {
        View::Denoised | View::Overlay => {
            let output = if args.view == View::Overlay {
                "overlay"
            } else {
                "denoised"
            };
            format!("{head} ! {denoiseseg} output={output} ! {} ! {out}", common::queue())
        }
        View::Mosaic => {
            let (w, h) = args.size.unwrap_or((640, 320));
            let mut in_flight = settings.property::<u32>("max-in-flight");
            if seg.is_some() {
                // Two elements and the queue between them.
                in_flight = 2 * in_flight + common::QUEUE_FRAMES;
            }
            let mosaic = mosaic_description(w, h, &legend_markup(&seg_spec.classes), "in", in_flight, live);
            format!(
                "{head} ! tee name=in in. ! {} ! {denoiseseg} output=denoised {mosaic}",
                common::queue()
            )
            .replace("{OUT}", &out)
        }
    };
    if let Some(mask) = &mask {
        if !seg_spec.segments() {
            bail!("--mask-output: the model {} does not segment", seg_model.display());
        }
        desc = format!("{desc} {}", mask.description());
    }
    if args.print_pipeline || verbose > 0 {
        eprintln!("pipeline: {desc}");
        if args.print_pipeline {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let pipeline = gst::parse::launch(&desc)
        .context("cannot build the pipeline (is a GStreamer plugin missing?)")?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let element = pipeline.by_name("d").expect("the pipeline names the element d");
    let first = match &seg {
        Some((opts, _)) => {
            let first = pipeline.by_name(FIRST).expect("the chain names its first element");
            configure(&first, &args.element, live)?;
            configure(&element, opts, live).with_context(|| format!("--seg-model {}", seg_model.display()))?;
            // The segmenter sees denoised frames: their noise is estimated, not the input's.
            element.set_property("noise-level", -1.0f64);
            Some(first)
        }
        None => {
            configure(&element, &args.element, live)?;
            None
        }
    };
    if live && leaky {
        eprintln!("live input: frames are dropped when the model cannot keep up (--no-leaky to queue them instead)");
    }
    let mut outputs = Vec::new();
    if let Sink::File(p, _) = &sink {
        outputs.push(OutputFile::watch(&pipeline, common::H264_MUX, p, false)?);
    }
    if let Some(mask) = &mask {
        outputs.push(mask.watch(&pipeline)?);
    }

    let started = Instant::now();
    let progress = if live { Progress::Live } else { Progress::File };
    let ending = common::run_pipeline(&pipeline, &element, progress)?;
    let elapsed = started.elapsed();
    let files: Vec<String> = outputs.iter().map(|o| o.conclude(ending)).collect();
    let frames = element.property::<u64>("frames-processed");
    match ending {
        Ending::BeforeFirstFrame => {
            eprintln!("{}", common::STOPPED_EARLY);
            return Ok(ExitCode::from(130));
        }
        Ending::Eos if frames == 0 => bail!("no frames came through the pipeline: no output written"),
        _ => {}
    }
    let dropped =
        element.property::<u64>("frames-dropped") + first.as_ref().map_or(0, |f| f.property::<u64>("frames-dropped"));
    let provider = element.property::<String>("provider");
    // "Finalized" only when every file got frames and EOS went through its muxer.
    let finalized = !outputs.is_empty() && outputs.iter().all(|o| o.frames() > 0);
    eprintln!(
        "{} frames in {} ({:.1} frames/s) on {provider}, {dropped} dropped, model {}{}",
        frames,
        common::secs(elapsed),
        frames as f64 / elapsed.as_secs_f64().max(1e-3),
        match &seg {
            Some(_) => format!("{} + {}", spec.name, seg_spec.name),
            None => spec.name.clone(),
        },
        match ending {
            Ending::Interrupted if finalized => ", interrupted (outputs finalized)",
            Ending::Interrupted => ", interrupted",
            Ending::Aborted => ", aborted (outputs may be unplayable)",
            Ending::Eos | Ending::BeforeFirstFrame => "",
        }
    );
    for f in files {
        eprintln!("{f}");
    }
    Ok(if ending == Ending::Aborted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}
