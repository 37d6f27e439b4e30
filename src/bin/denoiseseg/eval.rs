//! `denoiseseg eval`: adds seeded noise to clean footage at each given sigma (white
//! Gaussian, or camera-like signal-dependent noise), optionally compresses it as a
//! camera would (H.264 or JPEG), runs the element, and reports PSNR and SSIM (noisy and
//! denoised against clean), mIoU and pixel accuracy of the class maps against
//! ground-truth labels, the noise level fed to the model, and frames/s.
//!
//! One pipeline per sigma:
//!
//! ```text
//! source (RGB) ! tee ! queue ! appsink clean
//!                tee ! queue ! addnoise seed=N ... [! encoder ! decoder] ! tee ! queue ! appsink noisy
//!                                                                          tee ! queue ! denoiseseg ! appsink denoised (+ class map meta)
//! ```
//!
//! The source is `filesrc ! decodebin ! videoconvert` for a video, or an appsrc fed
//! the images of a folder one by one (each at its own size). The three appsinks are
//! paired by timestamp ([`FrameSets`]); the metrics run on a thread of their own.
//! Labels are matched to frames by order: a label video is decoded up front, a
//! folder's label maps are decoded as their frames come.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;
use serde_json::json;

use denoiseseg::metrics::{psnr_u8, ssim_rgb_u8, ConfusionMatrix};
use denoiseseg::model::ModelSpec;

use crate::common::{self, frame_of, quote, ElementOpts, Ending, FrameSets, Progress, RgbFrame};

const EXAMPLES: &str = "\
Examples:
  denoiseseg eval                        the shipped sample clip with its labels
  denoiseseg eval models/sample/street.mp4 --labels models/sample/street-labels.mkv
  denoiseseg eval models/sample/street.mp4 --sigma 25 --estimate --json -
  denoiseseg eval cityscapes/leftImg8bit/val/frankfurt --labels cityscapes/gtFine/val/frankfurt \\
      --sigma 15,25,50 --frames 100 --json eval.json
  denoiseseg eval clip.mkv --model my.onnx --provider cpu --seed 7
  denoiseseg eval cityscapes/leftImg8bit/val/frankfurt --labels cityscapes/gtFine/val/frankfurt \\
      --seg-model cityscapes.onnx --sigma 25
  denoiseseg eval street.avi --noise camera --correlation 0.7 --codec h264 --crf 23 --sigma 12,25 --estimate
  denoiseseg eval street.avi --noise camera --codec jpeg --quality 60 --sigma 25 --noise-level 30

INPUT is a clean video file (anything GStreamer decodes) or a folder of clean PNG/JPEG
images, each at its own size, taken in sorted name order. LABELS is a GRAY8 video of
class train ids (lossless: FFV1 in MKV, or PNG) or a folder of Cityscapes
*_labelTrainIds.png maps, matched to the frames by order; 255 marks pixels to ignore.
PSNR and SSIM are the means over frames (a frame identical to the clean one counts as
100 dB); 'noisy' is what the model gets (after the codec, with --codec). 'fed' is the
mean noise level given to the model: the sigma, the per-frame estimate (--estimate) or
--noise-level. Frames/s is the element's output rate, from its first frame to its last.

--noise camera is signal-dependent sensor noise (addnoise mode=poisson-gaussian): its
variance is gain * v + read^2 for a clean value v, with three quarters of the variance
from shot noise at mid-grey, so that SIGMA is its standard deviation at v = 128.";

/// PSNR given to a frame identical to the reference.
const PSNR_CAP: f64 = 100.0;
/// Timestamp step of images fed from a folder.
const IMAGE_STEP_NS: u64 = 40_000_000;

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Clean footage: a video file, or a folder of PNG/JPEG images [default: the shipped sample clip, with its labels]
    #[arg(value_name = "INPUT")]
    input: Option<PathBuf>,
    /// Ground-truth class maps: a GRAY8 label video or a folder of *_labelTrainIds.png
    #[arg(long, value_name = "LABELS")]
    labels: Option<PathBuf>,
    /// Noise levels to evaluate (Gaussian sigma in 8-bit units), comma-separated
    #[arg(long, value_name = "S,S,...", value_delimiter = ',', default_value = "15,25,50")]
    sigma: Vec<f64>,
    /// Seed of the added noise (the same seed gives the same noise)
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// The noise added: gaussian (white, SIGMA its standard deviation) or camera
    /// (signal-dependent shot and read noise, SIGMA its standard deviation at mid-grey)
    #[arg(long, value_enum, default_value_t = NoiseModel::Gaussian)]
    noise: NoiseModel,
    /// Spatial correlation of the noise (addnoise's `correlation`: the standard deviation
    /// in pixels, 0-1.5, of the Gaussian the noise field is filtered with; 0 is white)
    #[arg(long, value_name = "PX", default_value_t = 0.0, value_parser = parse_correlation)]
    correlation: f64,
    /// Compress the noisy frames before the model, as cameras do: h264 (x264, --crf) or jpeg (--quality)
    #[arg(long, value_enum, default_value_t = Codec::None)]
    codec: Codec,
    /// Constant-quality factor of --codec h264 (0-51; x264's CRF: 18 is visually lossless, 23 its default)
    #[arg(long, value_name = "N", default_value_t = 23, value_parser = clap::value_parser!(u32).range(0..=51))]
    crf: u32,
    /// Quality of --codec jpeg (1-100)
    #[arg(long, value_name = "Q", default_value_t = 75, value_parser = clap::value_parser!(u32).range(1..=100))]
    quality: u32,
    /// Let the element estimate the noise level per frame (noise-level=-1) instead of giving it the sigma
    #[arg(long, conflicts_with = "noise_level")]
    estimate: bool,
    /// Evaluate the first N frames (images) only
    #[arg(long, value_name = "N")]
    frames: Option<usize>,
    /// Also write the results as JSON to FILE ('-': standard output, the table then goes to standard error)
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Segment with this model after denoising with --model (as `run --seg-model`): PSNR and
    /// SSIM measure the last element's frames, mIoU the segmenter's class maps
    #[arg(long, value_name = "FILE.onnx")]
    seg_model: Option<PathBuf>,
    #[command(flatten)]
    element: ElementOpts,
}

/// The noise `eval` adds.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseModel {
    /// White Gaussian noise
    Gaussian,
    /// Signal-dependent shot noise plus read noise, as a camera sensor gives
    Camera,
}

impl NoiseModel {
    /// `addnoise` properties for noise of standard deviation `sigma` (at mid-grey for
    /// camera noise).
    fn addnoise_props(self, sigma: f64) -> String {
        match self {
            NoiseModel::Gaussian => format!("sigma={sigma}"),
            NoiseModel::Camera => {
                // Read noise carries a quarter of the variance at v = 128, shot noise
                // (variance gain * v) the rest.
                let read = sigma / 2.0;
                let gain = 0.75 * sigma * sigma / 128.0;
                format!("mode=poisson-gaussian sigma={read} gain={gain}")
            }
        }
    }
}

fn parse_correlation(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(0.0..=1.5).contains(&v) {
        return Err(format!("{v} is outside 0..=1.5"));
    }
    Ok(v)
}

/// The compression `eval` applies to the noisy frames.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// No compression
    None,
    /// H.264 with x264 at a constant quality (--crf), decoded with libav
    H264,
    /// JPEG at --quality
    Jpeg,
}

impl Args {
    /// The encode-and-decode chain after the noise (empty without a codec), ending in RGB.
    fn codec_chain(&self) -> String {
        match self.codec {
            Codec::None => String::new(),
            Codec::H264 => format!(
                "! videoconvert ! video/x-raw,format=I420 ! x264enc pass=qual quantizer={} speed-preset=faster \
                 ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=RGB",
                self.crf
            ),
            Codec::Jpeg => format!(
                "! jpegenc quality={} ! jpegdec ! videoconvert ! video/x-raw,format=RGB",
                self.quality
            ),
        }
    }

    /// How the noise is made, for the report.
    fn noise_description(&self) -> String {
        let codec = match self.codec {
            Codec::None => String::new(),
            Codec::H264 => format!(", H.264 CRF {}", self.crf),
            Codec::Jpeg => format!(", JPEG quality {}", self.quality),
        };
        let noise = match self.noise {
            NoiseModel::Gaussian => "Gaussian noise",
            NoiseModel::Camera => "camera noise (sigma at mid-grey)",
        };
        let correlation = if self.correlation > 0.0 {
            format!(" correlated over {} px", self.correlation)
        } else {
            String::new()
        };
        format!("{noise}{correlation}{codec}")
    }
}

/// Where the clean frames come from.
enum Source {
    Video(PathBuf),
    Images(Vec<PathBuf>),
}

/// Where the ground truth comes from.
enum Labels {
    /// Decoded up front, in order.
    Frames(Vec<RgbFrame>),
    /// One file per frame, decoded when needed.
    Files(Vec<PathBuf>),
}

impl Labels {
    fn len(&self) -> usize {
        match self {
            Labels::Frames(f) => f.len(),
            Labels::Files(f) => f.len(),
        }
    }

    fn get(&self, i: usize) -> Result<RgbFrame> {
        match self {
            Labels::Frames(f) => f.get(i).cloned().ok_or_else(|| {
                anyhow!(
                    "the labels have {} frames, fewer than the input (frame {} has none)",
                    f.len(),
                    i + 1
                )
            }),
            Labels::Files(f) => {
                let path = f.get(i).ok_or_else(|| {
                    anyhow!(
                        "the labels folder has {} maps, fewer than the input (frame {} has none)",
                        f.len(),
                        i + 1
                    )
                })?;
                decode(path, "GRAY8", None)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow!("no image decoded from {}", path.display()))
            }
        }
    }
}

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn sorted_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && keep(p))
        .collect();
    v.sort();
    Ok(v)
}

/// Cityscapes annotation files, which are never clean input images.
fn is_annotation(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ["_labelTrainIds.png", "_labelIds.png", "_color.png", "_instanceIds.png"]
        .iter()
        .any(|s| name.ends_with(s))
}

fn source_of(input: &Path) -> Result<Source> {
    if input.is_dir() {
        let images = sorted_files(input, |p| has_ext(p, &["png", "jpg", "jpeg"]) && !is_annotation(p))?;
        if images.is_empty() {
            bail!("no PNG or JPEG images in the folder {}", input.display());
        }
        Ok(Source::Images(images))
    } else if input.is_file() {
        Ok(Source::Video(input.to_path_buf()))
    } else {
        bail!("no such file or folder: {}", input.display())
    }
}

fn labels_of(path: &Path, limit: Option<usize>) -> Result<Labels> {
    if path.is_dir() {
        let mut files = sorted_files(path, |p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("_labelTrainIds.png"))
        })?;
        if files.is_empty() {
            files = sorted_files(path, |p| has_ext(p, &["png"]))?;
        }
        if files.is_empty() {
            bail!(
                "no *_labelTrainIds.png (or PNG) label maps in the folder {}",
                path.display()
            );
        }
        Ok(Labels::Files(files))
    } else if path.is_file() {
        let frames = decode(path, "GRAY8", limit)?;
        if frames.is_empty() {
            bail!("no frames decoded from the labels {}", path.display());
        }
        Ok(Labels::Frames(frames))
    } else {
        bail!("no such labels file or folder: {}", path.display())
    }
}

/// Decodes a video or an image into packed frames of `format` (RGB or GRAY8), the
/// first `limit` only when given.
fn decode(path: &Path, format: &str, limit: Option<usize>) -> Result<Vec<RgbFrame>> {
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format={format} ! appsink name=out sync=false",
        quote(&path.display().to_string())
    );
    let pipeline = gst::parse::launch(&desc)
        .context("cannot build the decoding pipeline")?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| anyhow!("no appsink"))?;
    let frames = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(None::<String>));
    {
        let frames = frames.clone();
        let errors = errors.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    match frame_of(&sample) {
                        Ok(f) => frames.lock().unwrap_or_else(|e| e.into_inner()).push(f),
                        Err(e) => {
                            errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e.to_string());
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let result = (|| -> Result<()> {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| anyhow!("cannot decode {}", path.display()))?;
        loop {
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(60)) else {
                bail!("decoding {} stalled", path.display());
            };
            match msg.view() {
                gst::MessageView::Eos(_) => return Ok(()),
                gst::MessageView::Error(e) => {
                    return Err(common::error_of(e).context(format!("cannot decode {}", path.display())));
                }
                _ => {}
            }
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    if let Some(e) = errors.lock().unwrap_or_else(|e| e.into_inner()).take() {
        bail!("{}: {e}", path.display());
    }
    let mut frames = std::mem::take(&mut *frames.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(n) = limit {
        frames.truncate(n);
    }
    Ok(frames)
}

/// Sums over the frames of one sigma.
struct Acc {
    frames: usize,
    psnr_noisy: f64,
    psnr_denoised: f64,
    ssim_noisy: f64,
    ssim_denoised: f64,
    confusion: Option<ConfusionMatrix>,
    sigma_used: f64,
    first: Option<Instant>,
    last: Option<Instant>,
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    psnr_u8(a, b).min(PSNR_CAP)
}

/// One set of frames as the appsinks gave it: clean, noisy, denoised.
struct Set {
    frames: Vec<RgbFrame>,
    sigma_used: f64,
    at: Instant,
}

fn metrics_thread(rx: mpsc::Receiver<Set>, labels: Option<Arc<Labels>>, classes: usize) -> Result<Acc> {
    let mut acc = Acc {
        frames: 0,
        psnr_noisy: 0.0,
        psnr_denoised: 0.0,
        ssim_noisy: 0.0,
        ssim_denoised: 0.0,
        confusion: labels.as_ref().map(|_| ConfusionMatrix::new(classes)),
        sigma_used: 0.0,
        first: None,
        last: None,
    };
    for set in rx {
        let i = acc.frames;
        let [clean, noisy, den] = &set.frames[..] else {
            bail!("internal: a frame set of {} frames", set.frames.len());
        };
        let (w, h) = (clean.width, clean.height);
        if (noisy.width, noisy.height) != (w, h) || (den.width, den.height) != (w, h) {
            bail!(
                "frame {}: the denoised frame is {}x{}, the clean one {w}x{h}",
                i + 1,
                den.width,
                den.height
            );
        }
        acc.psnr_noisy += psnr(&noisy.data, &clean.data);
        acc.psnr_denoised += psnr(&den.data, &clean.data);
        acc.ssim_noisy += ssim_rgb_u8(&noisy.data, &clean.data, w, h);
        acc.ssim_denoised += ssim_rgb_u8(&den.data, &clean.data, w, h);
        if let (Some(labels), Some(cm)) = (&labels, acc.confusion.as_mut()) {
            let truth = labels.get(i)?;
            if (truth.width, truth.height) != (w, h) {
                bail!(
                    "label map {} is {}x{}, but its frame is {w}x{h}",
                    i + 1,
                    truth.width,
                    truth.height
                );
            }
            let pred = den.mask.as_ref().ok_or_else(|| {
                anyhow!(
                    "frame {}: the element gave no class map (does the model segment?)",
                    i + 1
                )
            })?;
            cm.update(pred, &truth.data);
        }
        acc.sigma_used += set.sigma_used;
        acc.first.get_or_insert(set.at);
        acc.last = Some(set.at);
        acc.frames += 1;
    }
    Ok(acc)
}

/// The result of one sigma.
struct SigmaResult {
    sigma: f64,
    frames: usize,
    psnr_noisy: f64,
    psnr_denoised: f64,
    ssim_noisy: f64,
    ssim_denoised: f64,
    miou: Option<f64>,
    pixel_accuracy: Option<f64>,
    iou_per_class: Option<Vec<Option<f64>>>,
    sigma_used: f64,
    fps: f64,
    ending: Ending,
}

struct RunInfo {
    provider: Option<String>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn run_sigma(
    args: &Args,
    seg: Option<&ElementOpts>,
    source: &Source,
    labels: Option<Arc<Labels>>,
    classes: usize,
    sigma: f64,
    info: &mut RunInfo,
) -> Result<SigmaResult> {
    let head = match source {
        Source::Video(path) => format!(
            "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! tee name=t",
            quote(&path.display().to_string()),
        ),
        Source::Images(_) => "appsrc name=feed format=time ! tee name=t".to_string(),
    };
    let desc = format!(
        "{head} \
         t. ! queue ! appsink name=clean {sink} \
         t. ! queue ! addnoise name=noise {noise} correlation={correlation} seed={seed} {codec} ! tee name=n \
         n. ! queue ! appsink name=noisy {sink} \
         n. ! queue ! {chain}denoiseseg name=ds ! appsink name=den {sink}",
        // Chained (--seg-model): the first element denoises, ds segments its output.
        chain = if seg.is_some() {
            "denoiseseg name=first ! queue ! "
        } else {
            ""
        },
        // Not waiting for preroll: an encoder holds tens of frames before its first
        // output, and a prerolled clean sink would block the tee before it gets them.
        sink = "sync=false async=false",
        noise = args.noise.addnoise_props(sigma),
        correlation = args.correlation,
        seed = args.seed,
        codec = args.codec_chain(),
    );
    let pipeline = gst::parse::launch(&desc)
        .context("cannot build the evaluation pipeline")?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let ds = pipeline.by_name("ds").ok_or_else(|| anyhow!("no denoiseseg element"))?;
    if let (Source::Video(_), Some(n)) = (source, args.frames) {
        limit_frames(&pipeline, n)?;
    }
    // The element fed the noisy frames: ds, or the first of a chain.
    let fed_element = match seg {
        Some(opts) => {
            let first = pipeline.by_name("first").ok_or_else(|| anyhow!("no first element"))?;
            opts.apply(&ds).context("--seg-model")?;
            // The segmenter sees denoised frames: their noise is estimated.
            ds.set_property("noise-level", -1.0f64);
            first
        }
        None => ds.clone(),
    };
    args.element.apply(&fed_element)?;
    if args.element.noise_level.is_none() {
        let level = if args.estimate { -1.0 } else { sigma };
        common::set_property_checked(&fed_element, "noise-level", &level.to_string())?;
    }

    let (tx, rx) = mpsc::channel::<Set>();
    // Taken out after the run, so that the metrics thread ends even if GStreamer keeps
    // the appsinks (and their callbacks) alive a while longer.
    let tx = Arc::new(Mutex::new(Some(tx)));
    let provider = Arc::new(Mutex::new(None::<String>));
    let sets = {
        let weak = ds.downgrade();
        let weak_fed = fed_element.downgrade();
        let provider = provider.clone();
        let tx = tx.clone();
        FrameSets::connect(&pipeline, &["clean", "noisy", "den"], move |_pts, frames| {
            let at = Instant::now();
            let mut sigma_used = 0.0;
            if let Some(fed) = weak_fed.upgrade() {
                sigma_used = fed.property::<f64>("noise-estimate");
            }
            if let Some(ds) = weak.upgrade() {
                let mut p = provider.lock().unwrap_or_else(|e| e.into_inner());
                if p.is_none() {
                    *p = ds.property::<Option<String>>("provider").filter(|s| !s.is_empty());
                }
            }
            if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = tx.send(Set { frames, sigma_used, at });
            }
        })?
    };
    let worker = std::thread::spawn(move || metrics_thread(rx, labels, classes));

    let feeder = match source {
        Source::Images(files) => {
            let src = pipeline
                .by_name("feed")
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                .ok_or_else(|| anyhow!("no appsrc"))?;
            let files: Vec<PathBuf> = files.iter().take(args.frames.unwrap_or(usize::MAX)).cloned().collect();
            Some(std::thread::spawn(move || {
                let r = feed_images(&src, &files);
                if let Err(e) = &r {
                    // End the run: the bus loop reports it.
                    let msg = gst::message::Error::builder(gst::ResourceError::Read, &e.to_string())
                        .src(&src)
                        .build();
                    let _ = src.post_message(msg);
                }
                r
            }))
        }
        Source::Video(_) => None,
    };
    let started = Instant::now();
    let ending = common::run_pipeline(&pipeline, &ds, Progress::File);
    let elapsed = started.elapsed();
    let fed = feeder.map(|f| f.join().map_err(|_| anyhow!("the image feeder panicked")));
    let leftover = sets.finish();
    tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(sets);
    drop(pipeline);
    drop(ds);
    drop(fed_element);
    let acc = worker.join().map_err(|_| anyhow!("the metrics thread panicked"))?;
    let ending = ending?;
    if let Some(fed) = fed {
        fed??;
    }
    let acc = acc?;
    leftover?;
    if let Some(p) = provider.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        info.provider = Some(p);
    }
    if acc.frames == 0 {
        if ending == Ending::BeforeFirstFrame {
            bail!("stopped before the first frame: nothing measured");
        }
        bail!("no frames decoded from {}", args.input().display());
    }
    let n = acc.frames as f64;
    let fps = match (acc.first, acc.last) {
        (Some(a), Some(b)) if acc.frames > 1 && b > a => (n - 1.0) / b.duration_since(a).as_secs_f64(),
        _ => n / elapsed.max(Duration::from_millis(1)).as_secs_f64(),
    };
    let cm = acc.confusion.as_ref();
    Ok(SigmaResult {
        sigma,
        frames: acc.frames,
        psnr_noisy: acc.psnr_noisy / n,
        psnr_denoised: acc.psnr_denoised / n,
        ssim_noisy: acc.ssim_noisy / n,
        ssim_denoised: acc.ssim_denoised / n,
        miou: cm.and_then(|c| finite(c.miou())),
        pixel_accuracy: cm.and_then(|c| finite(c.pixel_accuracy())),
        iou_per_class: cm.map(|c| c.iou_per_class()),
        sigma_used: acc.sigma_used / n,
        fps,
        ending,
    })
}

/// Ends the stream after `n` frames: a probe on the tee's input sends EOS before
/// frame `n + 1` (identity's eos-after is off by one in
/// GStreamer 1.22).
fn limit_frames(pipeline: &gst::Pipeline, n: usize) -> Result<()> {
    let pad = pipeline
        .by_name("t")
        .and_then(|t| t.static_pad("sink"))
        .ok_or_else(|| anyhow!("no tee in the pipeline"))?;
    let count = std::sync::atomic::AtomicUsize::new(0);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, _info| {
        let seen = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if seen == n + 1 {
            // The pad is EOS now: this buffer and any later one are refused with
            // FLOW_EOS, which stops upstream.
            pad.send_event(gst::event::Eos::new());
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Pushes the images of a folder, each decoded to RGB at its own size, then EOS.
fn feed_images(src: &gst_app::AppSrc, files: &[PathBuf]) -> Result<()> {
    let started = Instant::now();
    while src.current_state() < gst::State::Paused {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the pipeline never started");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for (i, path) in files.iter().enumerate() {
        let frame = decode(path, "RGB", Some(1))?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no image decoded from {}", path.display()))?;
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, frame.width as u32, frame.height as u32)
            .fps(gst::Fraction::new(25, 1))
            .build()
            .with_context(|| format!("{}: bad image size", path.display()))?;
        let caps = info.to_caps().context("caps")?;
        // GStreamer's default layout: rows padded to a multiple of 4 bytes.
        let stride = info.stride()[0] as usize;
        let row = frame.width * 3;
        let mut data = vec![0u8; info.size()];
        for (dst, src_row) in data.chunks_mut(stride).zip(frame.data.chunks(row)) {
            dst[..row].copy_from_slice(src_row);
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(i as u64 * IMAGE_STEP_NS));
            b.set_duration(gst::ClockTime::from_nseconds(IMAGE_STEP_NS));
        }
        let sample = gst::Sample::builder().buffer(&buffer).caps(&caps).build();
        if src.push_sample(&sample).is_err() {
            return Ok(()); // the pipeline stopped (an error it reports, or Ctrl-C)
        }
    }
    let _ = src.end_of_stream();
    Ok(())
}

impl Args {
    /// The input, once `main` has put in the default.
    fn input(&self) -> &Path {
        self.input.as_deref().expect("main resolves the input")
    }
}

pub fn main(mut args: Args, _verbose: u8) -> Result<ExitCode> {
    if args.input.is_none() {
        let dir = common::models_dir();
        args.input = Some(dir.join(common::SAMPLE_CLIP));
        let labels = dir.join(common::SAMPLE_LABELS);
        if args.labels.is_none() && labels.is_file() {
            args.labels = Some(labels);
        }
    }
    if args.sigma.is_empty() {
        bail!("--sigma needs at least one value");
    }
    if let Some(s) = args.sigma.iter().find(|s| !(0.0..=255.0).contains(*s)) {
        bail!("--sigma {s} is outside 0..=255");
    }
    if args.frames == Some(0) {
        bail!("--frames must be at least 1");
    }
    common::check_report_path(args.json.as_deref())?;
    let source = source_of(args.input())?;
    if let Some(l) = &args.labels {
        if !l.exists() {
            bail!("no such labels file or folder: {}", l.display());
        }
    }
    let model = args.element.model_path()?;
    let first_spec = ModelSpec::load(&model)?;
    let seg = args
        .seg_model
        .as_deref()
        .map(|p| crate::run::seg_options(&args.element, p, &first_spec))
        .transpose()?;
    // The model whose class maps are scored, and the name the report gives the run.
    let (spec, name) = match &seg {
        Some((_, seg_spec)) => (seg_spec.clone(), format!("{} + {}", first_spec.name, seg_spec.name)),
        None => (first_spec.clone(), first_spec.name.clone()),
    };
    let seg_opts = seg.map(|(opts, _)| opts);
    common::init_gstreamer()?;
    args.element.check()?;
    if let Some(opts) = &seg_opts {
        opts.check().context("--seg-model")?;
    }
    let labels = match &args.labels {
        Some(path) => {
            if spec.classes.is_empty() {
                bail!("the model {} gives no class maps, so --labels cannot be scored", name);
            }
            let labels = labels_of(path, args.frames)?;
            if let (Source::Images(images), Labels::Files(files)) = (&source, &labels) {
                let need = images.len().min(args.frames.unwrap_or(usize::MAX));
                if files.len() < need {
                    bail!(
                        "the labels folder has {} maps for {} images; they are matched by sorted order",
                        files.len(),
                        need
                    );
                }
            }
            Some(Arc::new(labels))
        }
        None => None,
    };

    let mut info = RunInfo { provider: None };
    let mut results = Vec::new();
    for &sigma in &args.sigma {
        eprintln!("sigma {sigma}: running {name} ...");
        let r = run_sigma(
            &args,
            seg_opts.as_ref(),
            &source,
            labels.clone(),
            spec.classes.len(),
            sigma,
            &mut info,
        )?;
        let stop = r.ending != Ending::Eos;
        results.push(r);
        if stop {
            eprintln!("interrupted: reporting what was measured");
            break;
        }
    }
    if let Some(l) = &labels {
        if let Some(r) = results.first() {
            if l.len() > r.frames && args.frames.is_none() && matches!(**l, Labels::Frames(_)) {
                eprintln!(
                    "warning: the labels have {} frames, the input {}; the extra labels were not used",
                    l.len(),
                    r.frames
                );
            }
        }
    }

    let provider = info.provider.clone().unwrap_or_else(|| "unknown".into());
    let fed = match args.element.noise_level {
        Some(level) => format!(", noise level {level} given"),
        None if args.estimate => ", noise level estimated".into(),
        None => String::new(),
    };
    let mut table = format!(
        "model {} on {}, provider {provider}, seed {}, {}{fed}\n{:>6} {:>6} {:>11} {:>11} {:>8} {:>9} {:>9} {:>7} {:>7} {:>6} {:>9}\n",
        name,
        args.input().display(),
        args.seed,
        args.noise_description(),
        "sigma",
        "frames",
        "PSNR noisy",
        "PSNR out",
        "gain dB",
        "SSIM in",
        "SSIM out",
        "mIoU",
        "pixacc",
        "fed",
        "frames/s"
    );
    let opt = |v: Option<f64>, scale: f64| v.map(|v| format!("{:.1}", v * scale)).unwrap_or_else(|| "-".into());
    for r in &results {
        table.push_str(&format!(
            "{:>6} {:>6} {:>11.2} {:>11.2} {:>+8.2} {:>9.4} {:>9.4} {:>7} {:>7} {:>6.1} {:>9.2}\n",
            r.sigma,
            r.frames,
            r.psnr_noisy,
            r.psnr_denoised,
            r.psnr_denoised - r.psnr_noisy,
            r.ssim_noisy,
            r.ssim_denoised,
            opt(r.miou, 100.0),
            opt(r.pixel_accuracy, 100.0),
            r.sigma_used,
            r.fps
        ));
    }
    let class_names: Vec<&str> = spec.classes.iter().map(|c| c.name.as_str()).collect();
    let report = json!({
        "command": "eval",
        "input": args.input().display().to_string(),
        "labels": args.labels.as_ref().map(|l| l.display().to_string()),
        "model": model.display().to_string(),
        "model_name": name,
        "seg_model": args.seg_model.as_ref().map(|p| p.display().to_string()),
        "provider": provider,
        "seed": args.seed,
        "noise": format!("{:?}", args.noise).to_lowercase(),
        "correlation": args.correlation,
        "codec": format!("{:?}", args.codec).to_lowercase(),
        "crf": (args.codec == Codec::H264).then_some(args.crf),
        "jpeg_quality": (args.codec == Codec::Jpeg).then_some(args.quality),
        "estimate": args.estimate,
        "noise_level": args.element.noise_level,
        "results": results.iter().map(|r| json!({
            "sigma": r.sigma,
            "frames": r.frames,
            "psnr_noisy": r.psnr_noisy,
            "psnr_denoised": r.psnr_denoised,
            "psnr_gain": r.psnr_denoised - r.psnr_noisy,
            "ssim_noisy": r.ssim_noisy,
            "ssim_denoised": r.ssim_denoised,
            "miou": r.miou,
            "pixel_accuracy": r.pixel_accuracy,
            "iou_per_class": r.iou_per_class.as_ref().map(|v| {
                v.iter().enumerate().map(|(i, iou)| {
                    (class_names.get(i).copied().unwrap_or("?").to_string(), json!(iou))
                }).collect::<serde_json::Map<_, _>>()
            }),
            "noise_level_used": r.sigma_used,
            "fps": r.fps,
            "complete": r.ending == Ending::Eos,
        })).collect::<Vec<_>>(),
    });
    common::emit_report(&table, &report, args.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_not_inputs() {
        assert!(is_annotation(Path::new("a/x_gtFine_labelTrainIds.png")));
        assert!(is_annotation(Path::new("x_gtFine_color.png")));
        assert!(!is_annotation(Path::new("x_leftImg8bit.png")));
        assert!(has_ext(Path::new("a.JPG"), &["jpg"]));
        assert!(!has_ext(Path::new("a.txt"), &["jpg", "png"]));
    }

    #[test]
    fn psnr_is_capped() {
        assert_eq!(psnr(&[1, 2, 3], &[1, 2, 3]), PSNR_CAP);
        assert!(psnr(&[0, 0, 0], &[255, 255, 255]) < 1.0);
    }
}
