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
//! paired by timestamp ([`FrameSets`](crate::common::FrameSets)); the metrics run on a thread of their own.
//! Labels are matched to frames by order: a label video is decoded up front, a
//! folder's label maps are decoded as their frames come.
//!
//! The files: `args` (the options), `inputs` (clean frames and labels), `pipeline` (one
//! sigma's run), `measure` (the metrics); this one runs every sigma and reports.
mod args;
mod inputs;
mod measure;
mod pipeline;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde_json::json;

use denoiseseg::model::ModelSpec;

use crate::common::{self, Ending};

use args::Codec;
use inputs::{labels_of, source_of, Labels, Source};
use pipeline::{run_sigma, RunInfo};

pub use args::Args;

pub fn main(mut args: Args, _verbose: u8) -> Result<ExitCode> {
    // It writes no media: Ctrl-C stops at once and reports what was measured.
    common::stop_at_once();
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
    if let Some((i, s)) = args
        .sigma
        .iter()
        .enumerate()
        .find(|(i, s)| args.sigma[..*i].contains(s))
    {
        bail!("--sigma {s} is given twice (value {} of the list)", i + 1);
    }
    if args.frames == Some(0) {
        bail!("--frames must be at least 1");
    }
    let model_path = args.element.model_path().ok();
    let read = [
        ("the input", Some(args.input())),
        ("--labels", args.labels.as_deref()),
        ("the model", model_path.as_deref()),
    ];
    common::check_report_path(
        args.json.as_deref(),
        &common::inputs_named(read.into_iter().filter_map(|(what, p)| Some((what, p?)))),
    )?;
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
