//! Frames out of appsinks: RGB frames copied out of samples, and frames from several
//! appsinks paired by running time.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;
use gst_video::prelude::*;

/// An interleaved 8-bit RGB frame copied out of a sample, tightly packed.
#[derive(Clone, Debug)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
    /// The class map from the denoiseseg meta, tightly packed, when the buffer has one.
    pub mask: Option<Vec<u8>>,
}

/// Copies an RGB (or GRAY8) sample into a packed frame, with the class-map meta if present.
pub fn frame_of(sample: &gst::Sample) -> Result<RgbFrame> {
    let buffer = sample.buffer().ok_or_else(|| anyhow!("sample without buffer"))?;
    let caps = sample.caps().ok_or_else(|| anyhow!("sample without caps"))?;
    let info = gst_video::VideoInfo::from_caps(caps).context("sample caps")?;
    let frame =
        gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).map_err(|_| anyhow!("cannot map a frame"))?;
    let (w, h) = (info.width() as usize, info.height() as usize);
    let bpp = match info.format() {
        gst_video::VideoFormat::Rgb => 3,
        gst_video::VideoFormat::Gray8 => 1,
        f => bail!("expected RGB or GRAY8 frames, got {f:?}"),
    };
    let stride = frame.plane_stride()[0] as usize;
    let plane = frame.plane_data(0).map_err(|_| anyhow!("cannot read a plane"))?;
    let mut data = Vec::with_capacity(w * h * bpp);
    for y in 0..h {
        data.extend_from_slice(&plane[y * stride..y * stride + w * bpp]);
    }
    let mask = gst::meta::CustomMeta::from_buffer(buffer, "DenoisesegMaskMeta")
        .ok()
        .and_then(|m| {
            let s = m.structure();
            let mb = s.get::<gst::Buffer>("mask").ok()?;
            let ms = s.get::<u32>("stride").ok()? as usize;
            let map = mb.map_readable().ok()?;
            let mut out = Vec::with_capacity(w * h);
            for y in 0..h {
                out.extend_from_slice(map.get(y * ms..y * ms + w)?);
            }
            Some(out)
        });
    Ok(RgbFrame {
        width: w,
        height: h,
        data,
        mask,
    })
}

/// A sample's running time in nanoseconds (its timestamp on the segment it came in:
/// an encoder such as x264enc shifts timestamps and segments by 1000 hours, so the
/// raw timestamps of branches with and without one differ); 0 without a timestamp.
fn running_time_of(sample: &gst::Sample) -> u64 {
    let pts = sample.buffer().and_then(|b| b.pts());
    let running = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
        .zip(pts)
        .and_then(|(seg, pts)| seg.to_running_time(pts));
    running.or(pts).map(|t| t.nseconds()).unwrap_or(0)
}

/// Pairs frames from several appsinks by running time and hands each complete set, in
/// time order, to a callback. Frames only some sinks saw (a leaky drop) are counted
/// and discarded at the end.
pub struct FrameSets {
    inner: Arc<Mutex<SetsInner>>,
}

struct SetsInner {
    sinks: usize,
    pending: BTreeMap<u64, Vec<Option<RgbFrame>>>,
    error: Option<String>,
    on_set: Box<dyn FnMut(u64, Vec<RgbFrame>) + Send>,
}

impl FrameSets {
    /// Connects to `sinks` (appsinks by name in `pipeline`); `on_set(running_time, frames)`
    /// gets the frames in the order of `sinks`.
    pub fn connect(
        pipeline: &gst::Pipeline,
        sinks: &[&str],
        on_set: impl FnMut(u64, Vec<RgbFrame>) + Send + 'static,
    ) -> Result<FrameSets> {
        let inner = Arc::new(Mutex::new(SetsInner {
            sinks: sinks.len(),
            pending: BTreeMap::new(),
            error: None,
            on_set: Box::new(on_set),
        }));
        for (i, name) in sinks.iter().enumerate() {
            let sink = pipeline
                .by_name(name)
                .ok_or_else(|| anyhow!("no element {name} in the pipeline"))?
                .downcast::<gst_app::AppSink>()
                .map_err(|_| anyhow!("{name} is not an appsink"))?;
            let inner = inner.clone();
            sink.set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |s| {
                        let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        let mut g = inner.lock().unwrap_or_else(|e| e.into_inner());
                        let pts = running_time_of(&sample);
                        match frame_of(&sample) {
                            Ok(f) => g.add(i, pts, f),
                            Err(e) => {
                                g.error.get_or_insert(e.to_string());
                            }
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        Ok(FrameSets { inner })
    }

    /// Frames that never completed a set, and the first frame error, if any.
    pub fn finish(&self) -> Result<usize> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = &g.error {
            bail!("{e}");
        }
        Ok(g.pending.len())
    }
}

impl SetsInner {
    fn add(&mut self, i: usize, pts: u64, f: RgbFrame) {
        let n = self.sinks;
        let slot = self.pending.entry(pts).or_insert_with(|| vec![None; n]);
        slot[i] = Some(f);
        if slot.iter().all(Option::is_some) {
            let set = self
                .pending
                .remove(&pts)
                .expect("present")
                .into_iter()
                .flatten()
                .collect();
            (self.on_set)(pts, set);
        }
    }
}
