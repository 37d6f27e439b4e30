//! `denoiseseg`: the command-line app on the `denoiseseg` GStreamer element.
//!
//! Commands: `demo` (the shipped model on the shipped noisy street clip, as an MP4
//! mosaic), `run` (files, URIs and cameras, one or several on one shared engine), `eval` (PSNR, SSIM and mIoU at given noise
//! levels), `bench` (the element pipeline against a bare ONNX Runtime loop) and
//! `models` (the contract check of shipped and given models, and a suggested sidecar for
//! a model brought without one) and `serve` (an HTTP service running streams on one
//! shared engine).
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod common;
mod demo;
mod eval;
mod models;
mod run;
mod serve;

const EXAMPLES: &str = "\
Examples:
  denoiseseg demo                                   the shipped model on the shipped noisy clip -> out/demo.mp4
  denoiseseg run dashcam.mp4 -o annotated.mp4 --view overlay
  denoiseseg run /dev/video0 -o screen             a camera to the screen, live statistics
  denoiseseg run rtsp://cam/stream -o rec.mkv --mask-output classes.mkv
  denoiseseg run dashcam.mp4 --seg-model cityscapes.onnx -o out.mp4 --view overlay
  denoiseseg run cam1.mp4 cam2.mp4 /dev/video0 -o grid.mp4 --outputs out/cam{}.mp4   3 streams, one engine
  denoiseseg eval models/sample/street.mp4 --labels models/sample/street-labels.mkv --sigma 15,25,50
  denoiseseg bench --size 1024x512 --provider cpu
  denoiseseg models cityscapes.onnx --write-sidecar
  denoiseseg serve --port 8080                      HTTP service: POST /streams {\"uri\": ..., \"output\": ...}, GET /metrics";

#[derive(Parser, Debug)]
#[command(
    name = "denoiseseg",
    version,
    about = "Joint denoising and semantic segmentation of noisy video (GStreamer + ONNX Runtime)",
    after_help = EXAMPLES
)]
struct Cli {
    /// More detail: GStreamer's own error detail, the pipeline description
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the shipped model on the shipped noisy street clip; writes an MP4 mosaic
    Demo(demo::Args),
    /// Denoise and segment a video file, a URI (file, rtsp, http) or a camera; or several on one shared engine
    Run(run::Args),
    /// Add seeded noise to clean footage, run the model, report PSNR, SSIM and mIoU
    Eval(eval::Args),
    /// Frames/s and latency of the element pipeline against a bare ONNX Runtime loop (--streams N: one shared engine against N private ones)
    Bench(bench::Args),
    /// List the shipped and given models with their contract check; suggest a sidecar for a model without one
    Models(models::Args),
    /// HTTP service: streams added and removed over HTTP, all on one shared engine, with Prometheus metrics
    Serve(serve::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    let result = match cli.command {
        Command::Demo(a) => demo::main(a, verbose),
        Command::Run(a) => run::main(a, verbose),
        Command::Eval(a) => eval::main(a, verbose),
        Command::Bench(a) => bench::main(a, verbose),
        Command::Models(a) => models::main(a, verbose),
        Command::Serve(a) => serve::main(a, verbose),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line with every cause ("cannot X: because Y: because Z"); -v adds
            // GStreamer's detail below it.
            eprintln!("denoiseseg: error: {}", common::error_line(&e));
            if verbose > 0 {
                if let Some(detail) = common::error_detail(&e) {
                    for line in detail.lines() {
                        eprintln!("  {line}");
                    }
                }
            }
            ExitCode::FAILURE
        }
    }
}
