//! `eval`'s options: the noise it adds (white or camera-like, correlated or not),
//! the compression it applies, and what it measures on.
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::common::ElementOpts;

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
mIoU and pixel accuracy score each frame's class map as the model gives it
(class-confirm-frames=1); --set class-confirm-frames=2 scores the element's default,
stabilized over time.

--noise camera is signal-dependent sensor noise (addnoise mode=poisson-gaussian): its
variance is gain * v + read^2 for a clean value v, with three quarters of the variance
from shot noise at mid-grey, so that SIGMA is its standard deviation at v = 128.";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Clean footage: a video file, or a folder of PNG/JPEG images [default: the shipped sample clip, with its labels]
    #[arg(value_name = "INPUT")]
    pub(super) input: Option<PathBuf>,
    /// Ground-truth class maps: a GRAY8 label video or a folder of *_labelTrainIds.png
    #[arg(long, value_name = "LABELS")]
    pub(super) labels: Option<PathBuf>,
    /// Noise levels to evaluate (Gaussian sigma in 8-bit units), comma-separated
    #[arg(long, value_name = "S,S,...", value_delimiter = ',', default_value = "15,25,50")]
    pub(super) sigma: Vec<f64>,
    /// Seed of the added noise (the same seed gives the same noise)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(super) seed: u64,
    /// The noise added: gaussian (white, SIGMA its standard deviation) or camera
    /// (signal-dependent shot and read noise, SIGMA its standard deviation at mid-grey)
    #[arg(long, value_enum, default_value_t = NoiseModel::Gaussian)]
    pub(super) noise: NoiseModel,
    /// Spatial correlation of the noise (addnoise's `correlation`: the standard deviation
    /// in pixels, 0-1.5, of the Gaussian the noise field is filtered with; 0 is white)
    #[arg(long, value_name = "PX", default_value_t = 0.0, value_parser = parse_correlation)]
    pub(super) correlation: f64,
    /// Compress the noisy frames before the model, as cameras do: h264 (x264, --crf) or jpeg (--quality).
    /// For reproducible figures, x264 runs in one thread (its stream depends on the thread
    /// count) and without mb-tree (whose float propagation gave another stream from run to
    /// run for the same frames while the model ran beside it), and exactly the first
    /// --frames decoded frames reach it
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub(super) codec: Codec,
    /// Constant-quality factor of --codec h264 (0-51; x264's CRF: 18 is visually lossless, 23 its default)
    #[arg(long, value_name = "N", default_value_t = 23, value_parser = clap::value_parser!(u32).range(0..=51))]
    pub(super) crf: u32,
    /// Quality of --codec jpeg (1-100)
    #[arg(long, value_name = "Q", default_value_t = 75, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(super) quality: u32,
    /// Let the element estimate the noise level per frame (noise-level=-1) instead of giving it the sigma
    #[arg(long, conflicts_with = "noise_level")]
    pub(super) estimate: bool,
    /// Evaluate the first N frames (images) only
    #[arg(long, value_name = "N")]
    pub(super) frames: Option<usize>,
    /// Also write the results as JSON to FILE ('-': standard output, the table then goes to standard error)
    #[arg(long, value_name = "FILE")]
    pub(super) json: Option<PathBuf>,
    /// Segment with this model after denoising with --model (as `run --seg-model`): PSNR and
    /// SSIM measure the last element's frames, mIoU the segmenter's class maps
    #[arg(long, value_name = "FILE.onnx")]
    pub(super) seg_model: Option<PathBuf>,
    #[command(flatten)]
    pub(super) element: ElementOpts,
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
    pub(super) fn addnoise_props(self, sigma: f64) -> String {
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
    /// H.264 with x264 at a constant quality (--crf), one thread, no mb-tree (reproducible), decoded with libav
    H264,
    /// JPEG at --quality
    Jpeg,
}

impl Args {
    /// The encode-and-decode chain after the noise (empty without a codec), ending in RGB.
    pub(super) fn codec_chain(&self) -> String {
        match self.codec {
            Codec::None => String::new(),
            Codec::H264 => format!(
                "! videobox name=codec{even} ! videoconvert ! video/x-raw,format=I420 \
                 ! x264enc pass=qual quantizer={} speed-preset=faster threads=1 mb-tree=false \
                 ! h264parse ! avdec_h264 ! videoconvert ! videocrop name=codec{uneven} ! video/x-raw,format=RGB",
                self.crf,
                even = crate::common::EVEN,
                uneven = crate::common::UNEVEN,
            ),
            Codec::Jpeg => format!(
                "! jpegenc quality={} ! jpegdec ! videoconvert ! video/x-raw,format=RGB",
                self.quality
            ),
        }
    }

    /// How the noise is made, for the report.
    pub(super) fn noise_description(&self) -> String {
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

impl Args {
    /// The input, once `main` has put in the default.
    pub(super) fn input(&self) -> &Path {
        self.input.as_deref().expect("main resolves the input")
    }
}
