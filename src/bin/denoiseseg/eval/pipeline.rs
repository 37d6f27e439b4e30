//! One sigma's pipeline: the clean source, the noise and compression, the element and
//! the appsinks, run to its end while the measurements go on.
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;

use crate::common::{self, quote, ElementOpts, Ending, FrameSets, Progress};

use super::args::Args;
use super::inputs::{decode, Labels, Source};
use super::measure::{finite, metrics_thread, Set, SigmaResult};

/// Timestamp step of images fed from a folder.
const IMAGE_STEP_NS: u64 = 40_000_000;

pub(super) struct RunInfo {
    pub(super) provider: Option<String>,
}

pub(super) fn run_sigma(
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
    let pipeline = crate::common::parse_pipeline_as(&desc, "the evaluation pipeline")?;
    let ds = pipeline.by_name("ds").ok_or_else(|| anyhow!("no denoiseseg element"))?;
    if let (Source::Video(_), Some(n)) = (source, args.frames) {
        limit_frames(&pipeline, n)?;
    }
    // mIoU scores each frame's class map as the model gives it; the element's
    // stabilization over time (`class-confirm-frames`, set by --set) is for watching.
    ds.set_property("class-confirm-frames", 1u32);
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

/// Lets exactly the first `n` decoded frames into the tee, and so into addnoise and
/// the encoder, on every run: a probe on the tee's input drops frame `n + 1` and sends
/// EOS in its place, in the streaming thread, before anything downstream sees it. The
/// tee's input is EOS from then on, so later frames are refused with FLOW_EOS, which
/// stops the decoder. (Frame `n + 1` used to go on into the tee after the EOS; and
/// `identity eos-after=12` let 14 or 15 frames through in GStreamer 1.22, varying from
/// run to run. x264's lookahead encodes even the first frames differently when more
/// follow.)
fn limit_frames(pipeline: &gst::Pipeline, n: usize) -> Result<()> {
    let pad = pipeline
        .by_name("t")
        .and_then(|t| t.static_pad("sink"))
        .ok_or_else(|| anyhow!("no tee in the pipeline"))?;
    // Frames let through so far (n + 1 once EOS is sent).
    let seen = Mutex::new(0usize);
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |pad, info| {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let frames = match info.data {
                Some(gst::PadProbeData::BufferList(ref list)) => list.len(),
                _ => 1,
            };
            if *seen + frames <= n {
                *seen += frames;
                return gst::PadProbeReturn::Ok;
            }
            if *seen < n {
                // A list that crosses the limit: keep its first frames only.
                if let Some(gst::PadProbeData::BufferList(ref mut list)) = info.data {
                    let keep = n - *seen;
                    list.make_mut().remove(keep..);
                    *seen = n;
                    return gst::PadProbeReturn::Ok;
                }
            }
            if *seen == n {
                *seen += 1;
                pad.send_event(gst::event::Eos::new());
            }
            // The frame is consumed here. Not `Drop`: gstreamer-rs has taken the data out
            // of the probe info by then, and GStreamer 1.22 then unrefs a NULL item
            // (a GStreamer-CRITICAL on every limited run).
            drop(info.take_buffer());
            drop(info.take_buffer_list());
            gst::PadProbeReturn::Handled
        },
    );
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
