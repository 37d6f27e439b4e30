//! `denoiseseg demo`: the shipped model on the shipped street clip with added noise,
//! written as an MP4 mosaic (noisy input | denoised | class overlay with legend), and
//! the PSNR the model gained against the clean clip.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use denoiseseg::metrics::psnr_u8;
use gst::prelude::*;

use crate::common::{self, quote, ElementOpts, Ending, FrameSets, OutputFile, Progress};
use crate::run::{legend_markup, mosaic_description};

const EXAMPLES: &str = "\
Examples:
  denoiseseg demo                         writes out/demo.mp4
  denoiseseg demo --sigma 50 -o /tmp/demo50.mp4
  denoiseseg demo --input clean.mp4 --noise-level 25";

/// Where the mosaic goes when no --output is given.
const DEFAULT_OUTPUT: &str = "out/demo.mp4";

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The MP4 mosaic to write [default: out/demo.mp4]
    #[arg(short, long, value_name = "FILE.mp4")]
    pub output: Option<PathBuf>,
    /// A clean clip to use instead of the shipped one
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Gaussian noise added to the clip, 8-bit units (0-100)
    #[arg(long, value_name = "SIGMA", default_value_t = 25.0)]
    pub sigma: f64,
    /// Seed of the noise
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Width and height of each mosaic panel
    #[arg(long, value_name = "WxH", value_parser = common::parse_size, default_value = "512x256")]
    pub panel: (u32, u32),
    #[command(flatten)]
    pub element: ElementOpts,
}

/// Running sums of the PSNR of the noisy and the denoised frames against the clean ones.
#[derive(Default)]
struct Psnr {
    frames: usize,
    noisy: f64,
    denoised: f64,
}

pub fn main(args: Args, verbose: u8) -> Result<ExitCode> {
    if !(0.0..=100.0).contains(&args.sigma) {
        bail!("--sigma {} is outside 0..=100", args.sigma);
    }
    let input = match &args.input {
        Some(p) => p.clone(),
        None => common::models_dir().join(common::SAMPLE_CLIP),
    };
    if !input.is_file() {
        bail!("no clip at {}", input.display());
    }
    common::check_h264_size("--panel", args.panel)?;
    let output = match &args.output {
        Some(output) => output.clone(),
        None => {
            // The default's folder is the demo's own (git-ignored) to make.
            let output = PathBuf::from(DEFAULT_OUTPUT);
            let dir = output.parent().expect("the default names a folder");
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            output
        }
    };
    if output.extension().and_then(|e| e.to_str()) != Some("mp4") {
        bail!("--output {}: the demo writes an .mp4 file", output.display());
    }
    common::check_distinct(&[
        (format!("the input {}", input.display()), input.canonicalize()?),
        (format!("-o {}", output.display()), common::check_output(&output)?),
    ])?;
    common::init_gstreamer()?;
    let model = args.element.model_path()?;
    let spec = denoiseseg::model::ModelSpec::load(&model)?;
    if !spec.denoises() || !spec.segments() {
        bail!("the demo needs a joint model; {} is {}", model.display(), spec.kind());
    }

    let settings = args.element.check()?;
    let (w, h) = args.panel;
    let out = common::h264_file(&output, "mp4mux", 6000, false);
    let q = common::queue();
    let desc = format!(
        "filesrc location={src} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! tee name=clean \
         clean. ! queue ! appsink name=clean_sink sync=false \
         clean. ! {q} ! addnoise sigma={sigma} seed={seed} ! tee name=in \
         in. ! queue ! appsink name=noisy_sink sync=false \
         in. ! {q} ! denoiseseg name=d output=denoised {mosaic} \
         den. ! queue ! appsink name=den_sink sync=false",
        src = quote(&input.display().to_string()),
        sigma = args.sigma,
        seed = args.seed,
        mosaic = mosaic_description(
            w,
            h,
            &legend_markup(&spec.classes),
            "in",
            settings.property::<u32>("max-in-flight"),
            false
        )
        .replace("{OUT}", &out),
    );
    if verbose > 0 {
        eprintln!("pipeline: {desc}");
    }
    let pipeline = common::parse_pipeline_as(&desc, "the demo pipeline")?;
    let element = pipeline.by_name("d").expect("the pipeline names the element d");
    args.element.apply(&element)?;
    let written = OutputFile::watch(&pipeline, common::H264_MUX, &output, false)?;

    let psnr = Arc::new(Mutex::new(Psnr::default()));
    let sums = psnr.clone();
    let sets = FrameSets::connect(&pipeline, &["clean_sink", "noisy_sink", "den_sink"], move |_, f| {
        let mut s = sums.lock().unwrap_or_else(|e| e.into_inner());
        s.frames += 1;
        s.noisy += psnr_u8(&f[0].data, &f[1].data);
        s.denoised += psnr_u8(&f[0].data, &f[2].data);
    })?;

    eprintln!(
        "demo: {} ({}) on {} with Gaussian noise sigma {}",
        spec.name,
        spec.kind(),
        input.display(),
        args.sigma
    );
    let started = Instant::now();
    let ending = common::run_pipeline(&pipeline, &element, Progress::File)?;
    let elapsed = started.elapsed();
    let file = written.conclude(ending);
    if ending == Ending::BeforeFirstFrame {
        eprintln!("{}", common::STOPPED_EARLY);
        return Ok(ExitCode::from(130));
    }
    let unpaired = sets.finish()?;
    let frames = element.property::<u64>("frames-processed");
    let p = psnr.lock().unwrap_or_else(|e| e.into_inner());
    if p.frames == 0 {
        bail!("no frames came through the pipeline: no output written");
    }
    let (noisy, den) = (p.noisy / p.frames as f64, p.denoised / p.frames as f64);
    println!("model      {} {} ({})", spec.name, spec.version, model.display());
    println!("provider   {}", element.property::<String>("provider"));
    println!(
        "frames     {frames} in {} ({:.1} frames/s)",
        common::secs(elapsed),
        frames as f64 / elapsed.as_secs_f64().max(1e-3)
    );
    println!(
        "noise      sigma {} added, {:.1} estimated by the element",
        args.sigma,
        element.property::<f64>("noise-estimate")
    );
    println!(
        "PSNR       noisy {noisy:.2} dB -> denoised {den:.2} dB ({:+.2} dB)",
        den - noisy
    );
    if unpaired > 0 {
        println!("note       {unpaired} frames were not compared (dropped)");
    }
    match ending {
        Ending::Aborted => println!("output     {file}"),
        _ => println!("wrote      {}", output.display()),
    }
    Ok(match ending {
        Ending::Aborted => ExitCode::from(130),
        _ => ExitCode::SUCCESS,
    })
}
