//! `run` with one input: the element (or the `--seg-model` chain) between the source
//! and one output, in the view asked for, with an optional class-map output.
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use gst::prelude::*;

use super::io::{check_outputs, MaskSink, Sink, Source};
use super::report::{self, EngineFigures, Report, StreamFigures};
use super::{legend_markup, mosaic_description, Args, Models, View};
use crate::common::{self, OnError, OutputFile, Progress};

/// The element the run reports on (the segmenter of a `--seg-model` chain).
const ELEMENT: &str = "d";
/// The first (denoising) element of a `--seg-model` chain.
const FIRST: &str = "denoiser";
/// The element that writes the class maps: the muxer, or multifilesink.
const MASK_WRITER: &str = "mask_writer";
/// The source (its decoder, where separate, `src-dec`).
const SOURCE: &str = "src";

pub fn main(args: Args, verbose: u8) -> Result<ExitCode> {
    if let Some(option) = [args.outputs.as_ref().map(|_| "--outputs"), args.tile.map(|_| "--tile")]
        .into_iter()
        .flatten()
        .next()
    {
        bail!("{option} applies to several inputs; with one, give -o");
    }
    let input = &args.inputs[0];
    let source = Source::parse(input, args.rtsp_latency, args.rtsp_transport)?;
    let sink = Sink::parse(args.output.as_deref())?;
    let mask = args.mask_output.as_deref().map(MaskSink::parse).transpose()?;
    let masks: Vec<_> = mask.iter().map(|m| ("--mask-output".to_string(), m)).collect();
    let files = check_outputs(std::slice::from_ref(&source), &[("-o".into(), &sink)], &masks)?;
    common::check_report_path(args.json.as_deref(), &files)?;
    if let (Sink::File(..), Some(size)) = (&sink, args.size) {
        common::check_h264_size("--size", size)?;
    }
    let live = source.is_live();
    common::init_gstreamer()?;
    // The element's settings, checked on a scratch element before anything is built.
    let settings = common::scratch_element()?;
    if args.element.apply_for_input(&settings, live)? {
        eprintln!("{}", super::io::FILE_NOT_LEAKY);
    }
    let leaky = settings.property::<bool>("leaky");
    let models = Models::load(&args)?;
    models.check_segments(&args)?;

    let scale = match args.size {
        Some((w, h)) => format!(" ! videoscale ! video/x-raw,width={w},height={h}"),
        None => String::new(),
    };
    let out = sink.description(args.bitrate, live, common::H264_MUX);
    let head = format!("{}{} ! videoconvert", source.description(Some(SOURCE), leaky), scale);
    let names = [FIRST, ELEMENT];
    let mut desc = match args.view {
        View::Denoised | View::Overlay => {
            let output = if args.view == View::Overlay {
                "overlay"
            } else {
                "denoised"
            };
            let chain = models.chain(names, leaky, None, output);
            format!("{head} ! {chain} ! {} ! {out}", common::queue())
        }
        View::Mosaic => {
            let (w, h) = args.size.unwrap_or((640, 320));
            let in_flight = models.in_flight(settings.property::<u32>("max-in-flight"));
            let legend = legend_markup(&models.shown().classes);
            let mosaic = mosaic_description(w, h, &legend, "in", in_flight, live);
            let chain = models.chain(names, leaky, None, "denoised");
            format!("{head} ! tee name=in in. ! {} ! {chain} {mosaic}", common::queue()).replace("{OUT}", &out)
        }
    };
    if let Some(mask) = &mask {
        desc = format!("{desc} {}", mask.description(ELEMENT, MASK_WRITER));
    }
    if args.print_pipeline || verbose > 0 {
        eprintln!("pipeline: {desc}");
        if args.print_pipeline {
            return Ok(ExitCode::SUCCESS);
        }
    }
    sink.check_display()?;
    let pipeline = common::parse_pipeline(&desc)?;
    let (element, first) = models.configure(&pipeline, names, &args.element, live)?;
    if live && leaky {
        eprintln!("live input: frames are dropped when the model cannot keep up (--no-leaky to queue them instead)");
    }
    let mut outputs = Vec::new();
    if let Sink::File(p, _) = &sink {
        outputs.push(OutputFile::watch(&pipeline, common::H264_MUX, p, false)?);
    }
    if let Some(mask) = &mask {
        outputs.push(mask.watch(&pipeline, MASK_WRITER)?);
    }

    let started = Instant::now();
    let progress = if live { Progress::Live } else { Progress::File };
    // An error from inside the source (or its decoder) names the input.
    let inside: Vec<gst::Element> = [SOURCE.to_string(), format!("{SOURCE}-dec")]
        .iter()
        .filter_map(|n| pipeline.by_name(n))
        .collect();
    let mut from_input = false;
    let ending = common::run_streams_with(&pipeline, std::slice::from_ref(&element), progress, &mut |m| {
        if let (gst::MessageView::Error(_), Some(origin)) = (m.view(), m.src()) {
            from_input |= inside
                .iter()
                .any(|e| origin == e.upcast_ref::<gst::Object>() || origin.has_as_ancestor(e));
        }
        OnError::End
    })
    .map_err(|e| {
        if from_input {
            e.context(format!("input {input}"))
        } else {
            e
        }
    })?;
    let elapsed = started.elapsed();
    let files = report::conclude(&outputs, ending);
    let stream = StreamFigures::of(input, &element, first.as_ref(), files);
    Report {
        streams: vec![stream],
        mosaic: None,
        engine: EngineFigures::of(std::slice::from_ref(&element)),
        model: models.name(),
        elapsed,
        ending,
    }
    .finish(args.json.as_deref())
}
