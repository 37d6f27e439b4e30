//! # denoiseseg
//!
//! Joint denoising and semantic segmentation of raw video, frame by frame, with an ONNX
//! model on ONNX Runtime (TensorRT, CUDA or CPU execution provider).
//!
//! ```text
//! gst-launch-1.0 filesrc location=dashcam.mp4 ! decodebin ! videoconvert ! \
//!     denoiseseg output=overlay name=d ! queue ! videoconvert ! x264enc ! mp4mux ! filesink location=out.mp4 \
//!     d.mask ! queue ! fakesink
//! ```
//!
//! Pads:
//! - `sink`: raw video (RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB, ABGR, I420,
//!   NV12), any size and frame rate, system memory.
//! - `src` (always): the same caps, carrying the denoised frame, or with
//!   `output=overlay` the class colours blended over it. Each buffer also carries the
//!   class map in a custom meta named `DenoisesegMaskMeta` (fields `mask`: GRAY8
//!   buffer of class ids, `width`, `height`, `stride`: bytes per mask row, `classes`,
//!   and `palette`: a `GBytes` of 3 × `classes` bytes, the RGB colour of each class
//!   id), so an appsink, or `segoverlay` on another branch after a tee, can use it
//!   without linking `mask`. The meta survives buffer copies.
//! - `mask` (request): GRAY8 frames of class ids, same size and timestamps. One thread
//!   pushes both `src` and `mask`: as after a tee or a demuxer, give each branch a
//!   `queue` when both are linked, or the sinks never preroll.
//!
//! Frames go through the engine's frame queue (pre-processing workers, one batching
//! inference thread, post-processing workers, reordering); this element's src pad task
//! is the single pusher. Serialized events travel through the queue in order, EOS
//! drains it, flushes discard what is in flight, and with `leaky` the oldest waiting
//! frame is dropped rather than blocking a live source.
//!
//! Model outputs are checked as they are copied out of the model: NaN or infinite
//! values in `denoised` leave the input pixel in their place, NaN logits never win the
//! argmax, and class ids outside the sidecar's classes become class 0, so no class id
//! without a class leaves the element. Each kind of invalid output is posted once as an
//! element warning (and logged) until the element stops.
//!
//! State changes: READY -> PAUSED reads the model and its sidecar and starts the queue;
//! the ONNX Runtime session is built on the queue's inference thread, announced with
//! Progress messages, so this transition returns at once. PAUSED -> READY waits until
//! every thread of the queue has ended, including a session build still in progress:
//! it can take as long as one build (well under a second for the shipped models on a
//! CPU; a TensorRT engine without a cache in `engine-cache-dir`: up to minutes) or one
//! batch in the model. Nothing of the element's outlives the transition, so a process
//! may exit right after it, and a new start never runs two builds at once.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use denoiseseg::frame::{FrameLayout, PixelFormat, YuvMatrix};
use denoiseseg::model::ModelSpec;
use denoiseseg::queue::{
    self, FrameQueue, Output, Processor, QueueConfig, Recv, Refused, Stats, Submitted, Tensors, Tunables,
};
use denoiseseg::runtime::{self, OrtBackend, Provider, SessionOptions};
use denoiseseg::{convert, Error};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{OutputMode, ProviderChoice, MASK_META};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "denoiseseg",
        gst::DebugColorFlags::empty(),
        Some("Joint denoising and segmentation on ONNX Runtime"),
    )
});

static ORT_CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "onnxruntime",
        gst::DebugColorFlags::empty(),
        Some("ONNX Runtime's own log, forwarded by denoiseseg"),
    )
});

/// The model used when `model` is empty, looked for in `$DENOISESEG_MODEL_DIR`, then in
/// `models/` two folders above the plugin (a build in target/<profile>/ of the source
/// tree), then in the source tree the plugin was built from.
pub const DEFAULT_MODEL_FILE: &str = "denoiseseg-sdb-small.onnx";

fn default_model_path(plugin_dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = std::env::var_os("DENOISESEG_MODEL_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join(DEFAULT_MODEL_FILE);
    }
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(DEFAULT_MODEL_FILE);
    plugin_dir
        .map(|d| d.join("../../models").join(DEFAULT_MODEL_FILE))
        .filter(|p| p.is_file())
        .unwrap_or(built_in)
}

fn default_cache_dir() -> String {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("denoiseseg").join("tensorrt").display().to_string()
}

const DEFAULT_BATCH_SIZE: u32 = 1;
const DEFAULT_BATCH_TIMEOUT_MS: u32 = 0;
const DEFAULT_MAX_IN_FLIGHT: u32 = 8;
const DEFAULT_WORKERS: u32 = 2;
const DEFAULT_NOISE_LEVEL: f64 = -1.0;
const DEFAULT_OVERLAY_ALPHA: f64 = 0.5;
/// Largest frame accepted, in pixels (a 8K frame is 33 Mpx).
const MAX_PIXELS: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Settings {
    model: String,
    config: String,
    provider: ProviderChoice,
    device_id: u32,
    fp16: bool,
    engine_cache_dir: String,
    ort_library: String,
    inference_threads: u32,
    batch_size: u32,
    batch_timeout_ms: u32,
    max_in_flight: u32,
    workers: u32,
    leaky: bool,
    noise_level: f64,
    output: OutputMode,
    overlay_alpha: f64,
    /// What was wrong with `config` when it was set: the next start fails with it (a
    /// property set before the element is in a pipeline has no bus to report on).
    config_error: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: String::new(),
            config: String::new(),
            provider: ProviderChoice::Auto,
            device_id: 0,
            fp16: true,
            engine_cache_dir: default_cache_dir(),
            ort_library: String::new(),
            inference_threads: 0,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_timeout_ms: DEFAULT_BATCH_TIMEOUT_MS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            workers: DEFAULT_WORKERS,
            leaky: false,
            noise_level: DEFAULT_NOISE_LEVEL,
            output: OutputMode::Denoised,
            overlay_alpha: DEFAULT_OVERLAY_ALPHA,
            config_error: None,
        }
    }
}

/// Output settings the post-processing workers read per frame (mutable in PLAYING).
#[derive(Debug)]
struct OutputTunables {
    overlay: AtomicBool,
    /// f32 bits.
    alpha: AtomicU32,
}

/// What a caps event fixes for the frames after it.
struct FrameInfo {
    info: gst_video::VideoInfo,
    /// Layout of buffers this element allocates (the default layout of `info`).
    out_layout: FrameLayout,
    mask_info: gst_video::VideoInfo,
    /// The caps of `mask` for these frames.
    mask_caps: gst::Caps,
    out_pool: gst::BufferPool,
    mask_pool: gst::BufferPool,
    format: PixelFormat,
}

impl Drop for FrameInfo {
    fn drop(&mut self) {
        let _ = self.out_pool.set_active(false);
        let _ = self.mask_pool.set_active(false);
    }
}

fn make_pool(caps: &gst::Caps, size: usize) -> Result<gst::BufferPool, glib::BoolError> {
    let pool = gst::BufferPool::new();
    let mut config = pool.config();
    config.set_params(Some(caps), size as u32, 0, 0);
    pool.set_config(config)?;
    pool.set_active(true)?;
    Ok(pool)
}

fn layout_of(
    format: PixelFormat,
    info: &gst_video::VideoInfo,
    offsets: &[usize],
    strides: &[i32],
    size: usize,
) -> Result<FrameLayout, Error> {
    let mut l = FrameLayout::packed(format, info.width() as usize, info.height() as usize);
    for i in 0..(info.n_planes() as usize).min(3) {
        if strides[i] <= 0 {
            return Err(Error::Frame(format!(
                "negative or zero stride {} in plane {i}",
                strides[i]
            )));
        }
        l.offsets[i] = offsets[i];
        l.strides[i] = strides[i] as usize;
    }
    l.size = size;
    let colorimetry = info.colorimetry();
    l.matrix = if colorimetry.matrix() == gst_video::VideoColorMatrix::Bt709 {
        YuvMatrix::Bt709
    } else {
        YuvMatrix::Bt601
    };
    l.full_range = colorimetry.range() == gst_video::VideoColorRange::Range0_255;
    Ok(l)
}

impl FrameInfo {
    fn new(caps: &gst::Caps) -> Result<FrameInfo, String> {
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|_| format!("cannot parse caps {caps}"))?;
        let format = PixelFormat::from_name(info.format().to_str())
            .ok_or_else(|| format!("format {} is not supported", info.format().to_str()))?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        if w == 0 || h == 0 || w * h > MAX_PIXELS {
            return Err(format!("frame size {w}x{h} is outside 1x1 .. {MAX_PIXELS} pixels"));
        }
        if info.is_interlaced() {
            return Err("interlaced video is not supported; deinterlace first".into());
        }
        let out_layout =
            layout_of(format, &info, info.offset(), info.stride(), info.size()).map_err(|e| e.to_string())?;
        let mut mask_builder =
            gst_video::VideoInfo::builder(gst_video::VideoFormat::Gray8, info.width(), info.height())
                .fps(info.fps())
                .par(info.par());
        mask_builder = mask_builder.interlace_mode(gst_video::VideoInterlaceMode::Progressive);
        let mask_info = mask_builder.build().map_err(|e| e.to_string())?;
        let out_pool = make_pool(caps, info.size()).map_err(|e| e.to_string())?;
        let mask_caps = mask_info.to_caps().map_err(|e| e.to_string())?;
        let mask_pool = make_pool(&mask_caps, mask_info.size()).map_err(|e| e.to_string())?;
        Ok(FrameInfo {
            info,
            out_layout,
            mask_info,
            mask_caps,
            out_pool,
            mask_pool,
            format,
        })
    }
}

/// One frame in the queue.
struct Frame {
    /// The mapped input; released after pre-processing unless the output needs it.
    input: Option<gst::MappedBuffer<gst::buffer::Readable>>,
    layout: FrameLayout,
    info: Arc<FrameInfo>,
    /// The input buffer's timestamps and flags, carried to the output.
    stamp: Stamp,
}

/// What an output buffer keeps of its input buffer: timestamps, offsets and flags.
#[derive(Clone, Copy, Debug)]
struct Stamp {
    pts: Option<gst::ClockTime>,
    dts: Option<gst::ClockTime>,
    duration: Option<gst::ClockTime>,
    offset: u64,
    offset_end: u64,
    flags: gst::BufferFlags,
}

impl Stamp {
    /// The flags that describe the stream position and travel to the output.
    const FLAGS: gst::BufferFlags = gst::BufferFlags::DISCONT
        .union(gst::BufferFlags::RESYNC)
        .union(gst::BufferFlags::GAP)
        .union(gst::BufferFlags::DELTA_UNIT)
        .union(gst::BufferFlags::HEADER)
        .union(gst::BufferFlags::DROPPABLE)
        .union(gst::BufferFlags::MARKER)
        .union(gst::BufferFlags::CORRUPTED)
        .union(gst::BufferFlags::DECODE_ONLY);

    fn of(b: &gst::BufferRef) -> Stamp {
        Stamp {
            pts: b.pts(),
            dts: b.dts(),
            duration: b.duration(),
            offset: b.offset(),
            offset_end: b.offset_end(),
            flags: b.flags() & Self::FLAGS,
        }
    }

    fn apply(&self, dst: &mut gst::BufferRef) {
        dst.set_pts(self.pts);
        dst.set_dts(self.dts);
        dst.set_duration(self.duration);
        dst.set_offset(self.offset);
        dst.set_offset_end(self.offset_end);
        dst.unset_flags(Self::FLAGS);
        dst.set_flags(self.flags);
    }
}

/// What comes out of the queue for a frame.
struct Out {
    buffer: gst::Buffer,
    mask: Option<gst::Buffer>,
    /// The caps the frame was processed under (not the latest ones: a caps change may
    /// have been queued behind it).
    info: Arc<FrameInfo>,
}

/// Serialized items travelling through the queue between frames.
enum QEvent {
    Gst(gst::Event),
    /// A caps event, with what it fixes for the frames after it.
    Caps(gst::Event, Arc<FrameInfo>),
    /// A DRAIN query: answered once every frame before it has been pushed.
    Drain(crossbeam_channel::Sender<()>),
}

struct Proc {
    size_multiple: usize,
    palette: Vec<[u8; 3]>,
    /// The same palette as the meta's `palette` field: made once per start, each
    /// frame's meta takes a reference.
    palette_bytes: glib::Bytes,
    classes: u32,
    /// The model does not denoise: the input is the output image.
    keep_input: bool,
    tunables: Arc<OutputTunables>,
    /// Where invalid model outputs are reported.
    element: glib::WeakRef<super::DenoiseSeg>,
    /// The kinds of invalid output already reported since start (bits of [`Proc::FAULTS`]).
    warned: AtomicU8,
    /// Name of class 0, which invalid class ids become.
    class0: String,
}

impl Proc {
    /// Reports what was invalid in a frame's model outputs, and how the engine mended
    /// it, once per kind until the element stops: an element warning, which also logs.
    fn report_faults(&self, faults: &queue::OutputFaults, pts: Option<gst::ClockTime>) {
        let counts = [faults.nonfinite_denoised, faults.nan_logits, faults.bad_labels];
        for (kind, count) in counts.into_iter().enumerate() {
            let bit = 1u8 << kind;
            if count == 0 || self.warned.fetch_or(bit, Ordering::Relaxed) & bit != 0 {
                continue;
            }
            let Some(el) = self.element.upgrade() else { return };
            let what = match kind {
                0 => "NaN or infinite values in its denoised image; the input pixels are shown there".to_string(),
                1 => "NaN values in its logits; they never win the argmax".to_string(),
                _ => format!(
                    "class ids outside its {} classes; they are shown as class 0 ({})",
                    self.classes, self.class0
                ),
            };
            gst::element_warning!(
                el,
                gst::StreamError::Decode,
                ("The model gave invalid output: {}.", what),
                [
                    "{count} values in the frame at {}; reported once until the element stops",
                    pts.display()
                ]
            );
        }
    }
}

impl Processor for Proc {
    type Frame = Frame;
    type Output = Out;

    fn pre(&self, frame: &mut Frame, t: &mut Tensors) -> denoiseseg::Result<()> {
        let map = frame.input.as_ref().expect("input present until pre");
        t.set_size(frame.layout.width, frame.layout.height, self.size_multiple);
        let (pw, ph) = (t.pw, t.ph);
        convert::frame_to_planar(map.as_slice(), &frame.layout, &mut t.image, pw, ph)?;
        let overlay = self.tunables.overlay.load(Ordering::Relaxed);
        if !self.keep_input || overlay {
            // Release the upstream buffer now: hardware decoders' pools stay full.
            frame.input = None;
        }
        Ok(())
    }

    fn post(&self, frame: Frame, t: &mut Tensors) -> denoiseseg::Result<Out> {
        if t.faults.any() {
            self.report_faults(&t.faults, frame.stamp.pts);
        }
        let info = &frame.info;
        let (w, h) = (t.width, t.height);
        let mask = if t.has_labels {
            let mut mask = info
                .mask_pool
                .acquire_buffer(None)
                .map_err(|e| Error::Frame(format!("cannot allocate a mask buffer: {e:?}")))?;
            {
                let mask_mut = mask.get_mut().expect("fresh pool buffer is writable");
                let mut map = mask_mut
                    .map_writable()
                    .map_err(|_| Error::Frame("cannot map a mask buffer".into()))?;
                let stride = info.mask_info.stride()[0] as usize;
                convert::copy_labels(&t.labels, t.pw, w, h, map.as_mut_slice(), stride);
            }
            frame.stamp.apply(mask.get_mut().expect("writable"));
            Some(mask)
        } else {
            None
        };

        let overlay = self.tunables.overlay.load(Ordering::Relaxed);
        let mut buffer = match frame.input {
            Some(input) if !overlay => input.into_buffer(),
            _ => {
                let alpha = f32::from_bits(self.tunables.alpha.load(Ordering::Relaxed));
                // Packed RGB: blend over the 8-bit frame, as segoverlay does, so both
                // give the same bytes; YUV: blend before conversion.
                let blend_packed = overlay && t.has_labels && !info.format.is_yuv();
                if overlay && t.has_labels && info.format.is_yuv() {
                    let (pw, ph) = (t.pw, t.ph);
                    convert::blend_labels(&mut t.image, pw, ph, w, h, &t.labels, pw, &self.palette, alpha);
                }
                let mut out = info
                    .out_pool
                    .acquire_buffer(None)
                    .map_err(|e| Error::Frame(format!("cannot allocate an output buffer: {e:?}")))?;
                {
                    let out_mut = out.get_mut().expect("fresh pool buffer is writable");
                    let mut map = out_mut
                        .map_writable()
                        .map_err(|_| Error::Frame("cannot map an output buffer".into()))?;
                    convert::planar_to_frame(&t.image, t.pw, t.ph, &info.out_layout, map.as_mut_slice())?;
                    if blend_packed {
                        convert::blend_labels_frame(
                            map.as_mut_slice(),
                            &info.out_layout,
                            &t.labels,
                            t.pw,
                            &self.palette,
                            alpha,
                        )?;
                    }
                }
                out
            }
        };
        {
            let b = buffer.make_mut();
            frame.stamp.apply(b);
            if let Some(mask) = &mask {
                let mut meta = gst::meta::CustomMeta::add(b, MASK_META)
                    .map_err(|e| Error::Frame(format!("cannot attach the class map meta: {e}")))?;
                let s = meta.mut_structure();
                s.set("mask", mask.clone());
                s.set("width", w as u32);
                s.set("height", h as u32);
                s.set("stride", info.mask_info.stride()[0] as u32);
                s.set("classes", self.classes);
                s.set("palette", self.palette_bytes.clone());
            }
        }
        Ok(Out {
            buffer,
            mask,
            info: frame.info,
        })
    }
}

type Queue = FrameQueue<Proc, QEvent>;

struct State {
    queue: Arc<Queue>,
    spec: ModelSpec,
    info: Option<Arc<FrameInfo>>,
    stats: Arc<Stats>,
}

/// QoS state from downstream: frames whose running time is before `earliest` are late.
#[derive(Default)]
struct Qos {
    earliest: Option<gst::ClockTime>,
    proportion: f64,
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// Latency reported in the last LATENCY query.
    reported_latency: gst::ClockTime,
}

pub struct DenoiseSeg {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    mask_pad: Mutex<Option<gst::Pad>>,
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Shared with the queue while it exists; values follow the properties.
    tunables: Arc<Tunables>,
    out_tunables: Arc<OutputTunables>,
    /// The provider in use ("" until the session is built).
    provider: Arc<Mutex<String>>,
    /// Downstream flow as last seen by the src task, returned from chain.
    flow: Mutex<Result<gst::FlowSuccess, gst::FlowError>>,
    qos: Mutex<Qos>,
    last_stats: Mutex<queue::StatsSnapshot>,
    mask_seqnum: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DenoiseSeg {
    fn state_snapshot(&self) -> Option<(Arc<Queue>, Option<Arc<FrameInfo>>)> {
        lock(&self.state).as_ref().map(|s| (s.queue.clone(), s.info.clone()))
    }

    fn sink_chain(&self, _pad: &gst::Pad, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let flow = *lock(&self.flow);
        flow?;
        let Some((queue, info)) = self.state_snapshot() else {
            return Err(gst::FlowError::Flushing);
        };
        let Some(info) = info else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("buffer before caps"));
            return Err(gst::FlowError::NotNegotiated);
        };
        let stamp = Stamp::of(&buffer);
        if self.is_late(stamp.pts) {
            queue.stats().count_drop();
            self.post_qos(&stamp);
            return Ok(gst::FlowSuccess::Ok);
        }

        // Plane offsets and strides from the video meta, without allocating.
        let mut planes = ([0usize; 4], [0i32; 4], 0usize);
        if let Some(m) = buffer.meta::<gst_video::VideoMeta>() {
            let n = m.offset().len().min(4);
            planes.0[..n].copy_from_slice(&m.offset()[..n]);
            planes.1[..n].copy_from_slice(&m.stride()[..n]);
            planes.2 = n;
        }
        let map = buffer.into_mapped_buffer_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("cannot map the input buffer"));
            gst::FlowError::Error
        })?;
        let (offsets, strides) = match &planes {
            (o, s, n) if *n > 0 => (&o[..*n], &s[..*n]),
            _ => (info.info.offset(), info.info.stride()),
        };
        let layout = layout_of(info.format, &info.info, offsets, strides, map.len())
            .and_then(|l| l.validate(map.len()).map(|_| l))
            .map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("input buffer does not match its caps: {}", e)
                );
                gst::FlowError::Error
            })?;
        let frame = Frame {
            input: Some(map),
            layout,
            info,
            stamp,
        };
        match queue.submit(frame) {
            Ok(Submitted::Queued) => {}
            Ok(Submitted::QueuedDroppedOldest(dropped)) | Ok(Submitted::DroppedNew(dropped)) => {
                gst::debug!(
                    CAT,
                    imp = self,
                    "queue full: dropped the frame at {:?} (leaky)",
                    dropped.stamp.pts
                );
                self.post_qos(&dropped.stamp);
            }
            Err(Refused::Flushing) | Err(Refused::Closed) => {
                let flow = *lock(&self.flow);
                return flow.and(Err(gst::FlowError::Flushing));
            }
        }
        *lock(&self.flow)
    }

    fn running_time(&self, pts: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
        let qos = lock(&self.qos);
        let seg = qos.segment.as_ref()?;
        seg.to_running_time(pts?)
    }

    fn is_late(&self, pts: Option<gst::ClockTime>) -> bool {
        let Some(rt) = self.running_time(pts) else {
            return false;
        };
        let qos = lock(&self.qos);
        match qos.earliest {
            Some(earliest) => rt + qos.reported_latency < earliest,
            None => false,
        }
    }

    /// Posts QoS for a frame dropped before inference (late, or leaky).
    fn post_qos(&self, stamp: &Stamp) {
        let rt = self.running_time(stamp.pts);
        let seg = lock(&self.qos).segment.clone();
        let stream_time = seg.as_ref().and_then(|s| stamp.pts.and_then(|p| s.to_stream_time(p)));
        let stats = self.stats_snapshot();
        let msg = gst::message::Qos::builder(true)
            .running_time(rt)
            .stream_time(stream_time)
            .timestamp(stamp.pts)
            .duration(stamp.duration)
            .stats(
                gst::format::Buffers::from_u64(stats.processed),
                gst::format::Buffers::from_u64(stats.dropped),
            )
            .src(&*self.obj())
            .build();
        let _ = self.obj().post_message(msg);
    }

    fn stats_snapshot(&self) -> queue::StatsSnapshot {
        match lock(&self.state).as_ref() {
            Some(s) => {
                let snap = s.stats.snapshot();
                *lock(&self.last_stats) = snap;
                snap
            }
            None => *lock(&self.last_stats),
        }
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "sink event {:?}", event.type_());
        match event.view() {
            EventView::FlushStart(_) => {
                if let Some((queue, _)) = self.state_snapshot() {
                    queue.flush_start();
                }
                let ok = self.push_to_src_pads(event);
                let _ = self.srcpad.pause_task();
                ok
            }
            EventView::FlushStop(_) => {
                // Serialized: we hold the sink pad's stream lock, so no chain runs now.
                if let Some((queue, _)) = self.state_snapshot() {
                    queue.flush_stop();
                }
                *lock(&self.flow) = Ok(gst::FlowSuccess::Ok);
                {
                    let mut qos = lock(&self.qos);
                    qos.earliest = None;
                }
                let ok = self.push_to_src_pads(event);
                if let Err(e) = self.start_task() {
                    gst::error!(CAT, imp = self, "cannot restart the src task: {e}");
                    return false;
                }
                ok
            }
            EventView::Caps(c) => {
                let caps = c.caps_owned();
                let info = match FrameInfo::new(&caps) {
                    Ok(i) => Arc::new(i),
                    Err(e) => {
                        gst::element_imp_error!(self, gst::CoreError::Negotiation, ("cannot handle caps: {}", e));
                        return false;
                    }
                };
                gst::info!(CAT, imp = self, "caps {caps}");
                let queue = match lock(&self.state).as_mut() {
                    Some(s) => {
                        s.info = Some(info.clone());
                        s.queue.clone()
                    }
                    None => return false,
                };
                queue.submit_event(QEvent::Caps(event, info)).is_ok()
            }
            EventView::Segment(s) => {
                if let Ok(seg) = s.segment().clone().downcast::<gst::ClockTime>() {
                    lock(&self.qos).segment = Some(seg);
                } else {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("only TIME segments are supported"));
                    return false;
                }
                self.queue_event(event)
            }
            _ if event.is_serialized() => self.queue_event(event),
            _ => self.push_to_src_pads(event),
        }
    }

    /// Sends a serialized event through the queue so that it keeps its place among frames.
    fn queue_event(&self, event: gst::Event) -> bool {
        match self.state_snapshot() {
            Some((queue, _)) => queue.submit_event(QEvent::Gst(event)).is_ok(),
            None => self.push_to_src_pads(event),
        }
    }

    fn push_to_src_pads(&self, event: gst::Event) -> bool {
        let mask = lock(&self.mask_pad).clone();
        let mut ok = self.srcpad.push_event(event.clone());
        if let Some(mask) = mask {
            let is_stream_start = matches!(event.view(), gst::EventView::StreamStart(_));
            let is_caps = matches!(event.view(), gst::EventView::Caps(_));
            // The mask pad gets its own stream-start and caps (see `push_mask`).
            if !is_stream_start && !is_caps {
                ok |= mask.push_event(event);
            }
        }
        ok
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            // Our output buffers are our own: upstream allocates as it likes.
            QueryViewMut::Allocation(_) => false,
            QueryViewMut::Drain(_) => {
                let Some((queue, _)) = self.state_snapshot() else {
                    return true;
                };
                let (tx, rx) = crossbeam_channel::bounded(1);
                if queue.submit_event(QEvent::Drain(tx)).is_ok() {
                    // Answered when the marker is pushed, or dropped by a flush.
                    let _ = rx.recv();
                }
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            QueryViewMut::Latency(q) => {
                let mut upstream = gst::query::Latency::new();
                if !self.sinkpad.peer_query(&mut upstream) {
                    return false;
                }
                let (live, min, max) = upstream.result();
                let ours = self.processing_latency();
                let settings = lock(&self.settings).clone();
                let frame_dur = self
                    .state_snapshot()
                    .and_then(|(_, i)| i)
                    .and_then(|i| {
                        let fps = i.info.fps();
                        (fps.numer() > 0).then(|| {
                            gst::ClockTime::SECOND
                                .mul_div_floor(fps.denom() as u64, fps.numer() as u64)
                                .unwrap_or(gst::ClockTime::ZERO)
                        })
                    })
                    .unwrap_or(gst::ClockTime::ZERO);
                let capacity = frame_dur * settings.max_in_flight as u64;
                let max = max.map(|m| m + ours + capacity);
                lock(&self.qos).reported_latency = ours;
                gst::debug!(
                    CAT,
                    imp = self,
                    "latency: live {live}, min {} + {ours}, max {max:?}",
                    min
                );
                q.set(live, min + ours, max);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    /// Processing latency: the measured mean latency plus 25% headroom, at least one
    /// batch timeout (before anything is measured: the batch timeout plus 100 ms).
    fn processing_latency(&self) -> gst::ClockTime {
        let stats = self.stats_snapshot();
        let timeout = self.tunables.batch_timeout();
        let measured = if stats.processed > 0 {
            stats.mean_latency + stats.mean_latency / 4
        } else {
            Duration::from_millis(100)
        };
        let d = measured.max(timeout + Duration::from_millis(1));
        gst::ClockTime::from_nseconds(d.as_nanos() as u64)
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if let gst::EventView::Qos(q) = event.view() {
            let (_type, proportion, diff, timestamp) = q.get();
            let mut qos = lock(&self.qos);
            qos.proportion = proportion;
            if let Some(ts) = timestamp {
                // As basetransform: a frame that arrives late tells when the next one is due.
                let earliest = if diff > 0 {
                    ts.checked_add(gst::ClockTime::from_nseconds(diff as u64))
                } else {
                    ts.checked_sub(gst::ClockTime::from_nseconds(diff.unsigned_abs()))
                };
                qos.earliest = earliest;
            }
        }
        gst::log!(CAT, obj = pad, "upstream event {:?}", event.type_());
        self.sinkpad.push_event(event)
    }

    fn start_task(&self) -> Result<(), glib::BoolError> {
        let weak = self.obj().downgrade();
        self.srcpad.start_task(move || {
            let Some(element) = weak.upgrade() else { return };
            element.imp().src_loop();
        })
    }

    /// The src pad task: the single pusher, taking frames and events out of the queue in order.
    fn src_loop(&self) {
        let Some((queue, _)) = self.state_snapshot() else {
            let _ = self.srcpad.pause_task();
            return;
        };
        match queue.recv() {
            Recv::Item(Output::Frame {
                out,
                after_drop,
                latency,
            }) => {
                gst::trace!(CAT, imp = self, "frame out after {latency:?}");
                self.maybe_post_latency();
                if lock(&self.flow).is_err() {
                    return; // downstream failed: keep draining so upstream never blocks
                }
                let mut buffer = out.buffer;
                if after_drop {
                    buffer.make_mut().set_flags(gst::BufferFlags::DISCONT);
                }
                let flow = self.srcpad.push(buffer);
                let mask_flow = out.mask.map(|m| self.push_mask(m, &out.info));
                let flow = match (flow, mask_flow) {
                    // Only the src pad being unlinked is no reason to stop while mask is linked.
                    (Err(gst::FlowError::NotLinked), Some(Ok(s))) => Ok(s),
                    (f, _) => f,
                };
                self.set_flow(flow);
            }
            Recv::Item(Output::Event(QEvent::Caps(event, info))) => {
                if let Some(mask) = lock(&self.mask_pad).clone() {
                    self.push_mask_caps(&mask, &info);
                }
                self.push_to_src_pads(event);
            }
            Recv::Item(Output::Event(QEvent::Gst(event))) => {
                let eos = event.type_() == gst::EventType::Eos;
                let ok = self.push_to_src_pads(event);
                if eos && !ok {
                    gst::debug!(CAT, imp = self, "EOS not handled downstream");
                }
            }
            Recv::Item(Output::Event(QEvent::Drain(tx))) => {
                let _ = tx.send(());
            }
            Recv::Item(Output::Error(e)) => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", e));
                self.set_flow(Err(gst::FlowError::Error));
            }
            Recv::Flushing | Recv::Closed => {
                let _ = self.srcpad.pause_task();
            }
        }
    }

    fn set_flow(&self, flow: Result<gst::FlowSuccess, gst::FlowError>) {
        let mut f = lock(&self.flow);
        match flow {
            Ok(_) => {}
            Err(gst::FlowError::Flushing) => {}
            Err(e) => {
                if f.is_ok() {
                    gst::debug!(CAT, imp = self, "downstream flow {e:?}");
                    *f = Err(e);
                }
            }
        }
    }

    /// Posts a LATENCY message when the measured latency outgrew what was reported.
    fn maybe_post_latency(&self) {
        let reported = lock(&self.qos).reported_latency;
        if reported.is_zero() {
            return;
        }
        let now = self.processing_latency();
        if now > reported + reported / 5 {
            lock(&self.qos).reported_latency = now;
            gst::info!(CAT, imp = self, "processing latency grew to {now}, posting LATENCY");
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }

    /// Sends `mask` the caps of the frames described by `info`, unless it has them.
    fn push_mask_caps(&self, mask: &gst::Pad, info: &FrameInfo) {
        let current = mask.current_caps();
        if current
            .as_ref()
            .is_some_and(|c| c.as_ptr() == info.mask_caps.as_ptr() || *c == info.mask_caps)
        {
            return;
        }
        self.ensure_mask_stream_start(mask);
        mask.push_event(gst::event::Caps::new(&info.mask_caps));
    }

    fn ensure_mask_stream_start(&self, mask: &gst::Pad) {
        if mask.sticky_event::<gst::event::StreamStart>(0).is_some() {
            return;
        }
        let upstream = self.srcpad.sticky_event::<gst::event::StreamStart>(0);
        let id = upstream
            .as_ref()
            .map(|e| format!("{}/mask", e.stream_id()))
            .unwrap_or_else(|| format!("denoiseseg-mask-{}", self.mask_seqnum.fetch_add(1, Ordering::Relaxed)));
        let mut b = gst::event::StreamStart::builder(&id);
        if let Some(g) = upstream.and_then(|e| e.group_id()) {
            b = b.group_id(g);
        }
        mask.push_event(b.build());
    }

    /// Pushes a class map on `mask`, under the caps of the frame it belongs to.
    fn push_mask(&self, buffer: gst::Buffer, info: &FrameInfo) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(mask) = lock(&self.mask_pad).clone() else {
            return Err(gst::FlowError::NotLinked);
        };
        // A pad requested mid-stream has seen neither the caps nor the segment.
        self.push_mask_caps(&mask, info);
        if mask.sticky_event::<gst::event::Segment>(0).is_none() {
            if let Some(seg) = self.srcpad.sticky_event::<gst::event::Segment>(0) {
                mask.push_event(seg);
            }
        }
        match mask.push(buffer) {
            Err(gst::FlowError::NotLinked) => Ok(gst::FlowSuccess::Ok),
            f => f,
        }
    }

    /// READY -> PAUSED: check the model, load ONNX Runtime, start the queue (the session
    /// is built on the queue's inference thread, with Progress messages).
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        if let Some(e) = &settings.config_error {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("config {}: {}", settings.config, e)
            ));
        }
        let plugin_dir = self
            .obj()
            .factory()
            .and_then(|f| f.plugin())
            .and_then(|p| p.filename())
            .and_then(|f| f.parent().map(Path::to_path_buf));
        let model = if settings.model.is_empty() {
            default_model_path(plugin_dir.as_deref())
        } else {
            PathBuf::from(&settings.model)
        };
        let spec =
            ModelSpec::load(&model).map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("model: {}", e)))?;
        runtime::set_log_sink(Arc::new(|level, msg| {
            use runtime::LogLevel as L;
            match level {
                L::Fatal | L::Error => gst::error!(ORT_CAT, "{msg}"),
                L::Warning => gst::warning!(ORT_CAT, "{msg}"),
                L::Info => gst::info!(ORT_CAT, "{msg}"),
                L::Verbose => gst::trace!(ORT_CAT, "{msg}"),
            }
        }));

        let explicit = (!settings.ort_library.is_empty()).then(|| PathBuf::from(&settings.ort_library));
        let candidates = runtime::library_candidates(explicit.as_deref(), plugin_dir.as_deref());
        let (env, lib) =
            runtime::environment(&candidates).map_err(|e| gst::error_msg!(gst::LibraryError::Init, ("{}", e)))?;
        gst::info!(CAT, imp = self, "ONNX Runtime from {}", lib.display());

        if settings.max_in_flight < settings.batch_size {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                (
                    "max-in-flight ({}) must be at least batch-size ({})",
                    settings.max_in_flight,
                    settings.batch_size
                )
            ));
        }
        let provider = match settings.provider {
            ProviderChoice::Auto => Provider::Auto,
            ProviderChoice::TensorRt => Provider::TensorRt,
            ProviderChoice::Cuda => Provider::Cuda,
            ProviderChoice::Cpu => Provider::Cpu,
        };
        let opts = SessionOptions {
            provider,
            device_id: settings.device_id,
            fp16: settings.fp16,
            engine_cache_dir: (!settings.engine_cache_dir.is_empty())
                .then(|| PathBuf::from(&settings.engine_cache_dir)),
            intra_threads: settings.inference_threads as usize,
            batch_size: settings.batch_size as usize,
            profile_size: spec.input_size.map(|[w, h]| {
                let m = spec.size_multiple;
                (
                    denoiseseg::model::round_up(w as usize, m),
                    denoiseseg::model::round_up(h as usize, m),
                )
            }),
        };

        self.tunables.set_leaky(settings.leaky);
        self.tunables.set_noise_level(sigma_01(settings.noise_level));
        self.tunables
            .set_batch_timeout(Duration::from_millis(settings.batch_timeout_ms as u64));
        self.out_tunables
            .overlay
            .store(settings.output == OutputMode::Overlay, Ordering::Relaxed);
        self.out_tunables
            .alpha
            .store((settings.overlay_alpha as f32).to_bits(), Ordering::Relaxed);
        lock(&self.provider).clear();

        let proc = Arc::new(Proc {
            size_multiple: spec.size_multiple,
            palette: spec.palette(),
            palette_bytes: glib::Bytes::from_owned(spec.palette().concat()),
            classes: spec.classes.len() as u32,
            keep_input: !spec.denoises(),
            tunables: self.out_tunables.clone(),
            element: self.obj().downgrade(),
            warned: AtomicU8::new(0),
            class0: spec.classes.first().map(|c| c.name.clone()).unwrap_or_default(),
        });
        let config = QueueConfig {
            batch_size: settings.batch_size as usize,
            max_in_flight: settings.max_in_flight as usize,
            workers: settings.workers as usize,
            size_multiple: spec.size_multiple,
            needs_sigma: spec.sigma_input.is_some(),
        };
        let weak = self.obj().downgrade();
        let factory_spec = spec.clone();
        let provider_slot = self.provider.clone();
        let factory: queue::BackendFactory = Box::new(move || {
            let progress = |t: gst::ProgressType, text: String| {
                if let Some(el) = weak.upgrade() {
                    gst::info!(CAT, obj = el, "{text}");
                    let _ = el.post_message(gst::message::Progress::builder(t, "model", &text).src(&el).build());
                }
            };
            progress(
                gst::ProgressType::Start,
                format!(
                    "building the {} session for {} ({})",
                    opts.provider,
                    factory_spec.name,
                    factory_spec.path.display()
                ),
            );
            let started = std::time::Instant::now();
            match runtime::load_model(&env, &factory_spec, &opts) {
                Ok(model) => {
                    if let Some(el) = weak.upgrade() {
                        for w in &model.warnings {
                            gst::warning!(CAT, obj = el, "{w}");
                        }
                        if opts.provider == Provider::Auto {
                            gst::warning!(CAT, obj = el, "execution-provider=auto runs on {}", model.provider);
                        }
                    }
                    *lock(&provider_slot) = model.provider.name().to_string();
                    progress(
                        gst::ProgressType::Complete,
                        format!(
                            "model ready on {} in {:.2} s",
                            model.provider,
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    Ok(Box::new(OrtBackend::new(model)) as Box<dyn queue::Backend>)
                }
                Err(e) => {
                    progress(gst::ProgressType::Error, format!("model failed: {e}"));
                    Err(e)
                }
            }
        });
        // Before the queue's threads start, so that they allocate as tuned.
        runtime::tune_allocator();
        let queue = FrameQueue::new(config, self.tunables.clone(), proc, factory)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
        gst::info!(
            CAT,
            imp = self,
            "model {} {} ({}), {} classes, size multiple {}",
            spec.name,
            spec.version,
            spec.kind(),
            spec.classes.len(),
            spec.size_multiple
        );
        let stats = queue.stats();
        *lock(&self.flow) = Ok(gst::FlowSuccess::Ok);
        *lock(&self.qos) = Qos::default();
        *lock(&self.state) = Some(State {
            queue: Arc::new(queue),
            spec,
            info: None,
            stats,
        });
        Ok(())
    }

    /// PAUSED -> READY: wake everything, stop the queue's threads.
    fn stop(&self) {
        let state = lock(&self.state).take();
        if let Some(state) = state {
            *lock(&self.last_stats) = state.stats.snapshot();
            state.queue.shutdown();
            gst::debug!(CAT, imp = self, "stopped model {}", state.spec.name);
        }
    }

    fn ready_only(&self, name: &str) -> bool {
        let state = self.obj().current_state();
        if state > gst::State::Ready {
            gst::warning!(
                CAT,
                imp = self,
                "property '{name}' can only be changed in NULL or READY state"
            );
            return false;
        }
        true
    }

    /// Sets the properties a preset names. Every entry that can be set is set; what
    /// is wrong (the file, its TOML, an entry) is logged and kept for `start` to fail
    /// with, since a property set before the element is in a pipeline has no bus.
    fn apply_config(&self, path: &str) {
        let problems = if path.is_empty() {
            Vec::new()
        } else {
            match denoiseseg::config::load_properties(Path::new(path)) {
                Ok(props) => props
                    .into_iter()
                    .filter_map(|(name, value)| self.apply_config_entry(&name, &value).err())
                    .collect(),
                Err(e) => vec![e.to_string()],
            }
        };
        for p in &problems {
            gst::warning!(CAT, imp = self, "config {path}: {p}");
        }
        lock(&self.settings).config_error = (!problems.is_empty()).then(|| problems.join("; "));
    }

    fn apply_config_entry(&self, name: &str, value: &str) -> Result<(), String> {
        if name == "config" {
            return Err("a config cannot load another config".into());
        }
        let pspec = self
            .obj()
            .find_property(name)
            .ok_or_else(|| format!("no property '{name}'"))?;
        let v = checked_value(&pspec, value).map_err(|e| format!("{name} {e}"))?;
        self.obj().set_property_from_value(name, &v);
        Ok(())
    }
}

/// Parses a property value from text and checks that the property is writable and the
/// value in range (glib panics on a value it has to clamp).
fn checked_value(pspec: &glib::ParamSpec, text: &str) -> Result<glib::Value, String> {
    if !pspec.flags().contains(glib::ParamFlags::WRITABLE) {
        return Err("is read-only".into());
    }
    let v = glib::Value::deserialize(text, pspec.value_type())
        .map_err(|_| format!("= '{text}' is not a valid {}", pspec.value_type()))?;
    fn range<T: PartialOrd + std::fmt::Display>(x: T, min: T, max: T) -> Result<(), String> {
        if x < min || x > max {
            return Err(format!("= {x} is outside {min}..={max}"));
        }
        Ok(())
    }
    if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt>() {
        range(v.get::<u32>().map_err(|e| e.to_string())?, p.minimum(), p.maximum())?;
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecDouble>() {
        range(v.get::<f64>().map_err(|e| e.to_string())?, p.minimum(), p.maximum())?;
    }
    Ok(v)
}

/// Noise level property (8-bit units, -1 = estimate) to the engine's [0,1] scale.
fn sigma_01(level: f64) -> f32 {
    if level < 0.0 {
        -1.0
    } else {
        (level / 255.0) as f32
    }
}

#[glib::object_subclass]
impl ObjectSubclass for DenoiseSeg {
    const NAME: &'static str = "GstDenoiseSeg";
    type Type = super::DenoiseSeg;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").expect("sink template");
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                DenoiseSeg::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                DenoiseSeg::catch_panic_pad_function(parent, || false, |imp| imp.sink_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                DenoiseSeg::catch_panic_pad_function(parent, || false, |imp| imp.sink_query(pad, query))
            })
            // Caps and accept-caps queries are proxied to `src` only: `mask` carries
            // GRAY8 whatever the video is, so its caps say nothing about ours.
            .iterate_internal_links_function(|_pad, parent| {
                DenoiseSeg::catch_panic_pad_function(
                    parent,
                    || gst::Iterator::from_vec(Vec::new()),
                    |imp| gst::Iterator::from_vec(vec![imp.srcpad.clone()]),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS)
            .build();
        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .event_function(|pad, parent, event| {
                DenoiseSeg::catch_panic_pad_function(parent, || false, |imp| imp.src_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                DenoiseSeg::catch_panic_pad_function(parent, || false, |imp| imp.src_query(pad, query))
            })
            .activatemode_function(|pad, parent, mode, active| {
                DenoiseSeg::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic in activate")),
                    |imp| {
                        if mode != gst::PadMode::Push {
                            return Err(gst::loggable_error!(CAT, "only push mode"));
                        }
                        if active {
                            imp.start_task().map_err(|e| gst::loggable_error!(CAT, "{e}"))
                        } else {
                            if let Some((queue, _)) = imp.state_snapshot() {
                                queue.flush_start();
                            }
                            pad.stop_task().map_err(|e| gst::loggable_error!(CAT, "{e}"))
                        }
                    },
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS)
            .build();
        let settings = Settings::default();
        DenoiseSeg {
            sinkpad,
            srcpad,
            mask_pad: Mutex::new(None),
            tunables: Arc::new(Tunables::new(
                settings.leaky,
                sigma_01(settings.noise_level),
                Duration::from_millis(settings.batch_timeout_ms as u64),
            )),
            out_tunables: Arc::new(OutputTunables {
                overlay: AtomicBool::new(settings.output == OutputMode::Overlay),
                alpha: AtomicU32::new((settings.overlay_alpha as f32).to_bits()),
            }),
            settings: Mutex::new(settings),
            state: Mutex::new(None),
            provider: Arc::new(Mutex::new(String::new())),
            flow: Mutex::new(Ok(gst::FlowSuccess::Ok)),
            qos: Mutex::new(Qos::default()),
            last_stats: Mutex::new(Default::default()),
            mask_seqnum: AtomicU64::new(0),
        }
    }
}

impl ObjectImpl for DenoiseSeg {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(&format!(
                        "Path of the ONNX model; its TOML sidecar (same name, .toml) must lie beside it. \
                         Empty: the shipped default {DEFAULT_MODEL_FILE} from $DENOISESEG_MODEL_DIR, else the models/ folder of the source tree the plugin was built in. NULL/READY only"
                    ))
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("config")
                    .nick("Config preset")
                    .blurb("Path of a TOML preset whose [denoiseseg] table sets properties by name (see configs/); applied when \
                            set. A preset that cannot be read, or an entry that cannot be set, fails the next start \
                            with an error naming the file and the entry. NULL/READY only")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("execution-provider", d.provider)
                    .nick("Execution provider")
                    .blurb("ONNX Runtime execution provider: auto tries TensorRT, CUDA, then CPU and warns which runs; \
                            an explicit choice that cannot be had is an error. NULL/READY only")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("device-id")
                    .nick("GPU device")
                    .blurb("CUDA device index for the TensorRT and CUDA providers (0-15). NULL/READY only")
                    .maximum(15)
                    .default_value(d.device_id)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("fp16")
                    .nick("FP16")
                    .blurb("TensorRT: allow half-precision kernels (faster, tiny accuracy change). NULL/READY only")
                    .default_value(d.fp16)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("engine-cache-dir")
                    .nick("TensorRT cache folder")
                    .blurb("Folder for TensorRT engine and timing caches, so later starts skip the engine build; \
                            empty disables caching. NULL/READY only")
                    .default_value(Some(d.engine_cache_dir.as_str()))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("ort-library")
                    .nick("ONNX Runtime library")
                    .blurb("Path of libonnxruntime.so.1 (1.31). Empty: $ORT_DYLIB_PATH, then beside the plugin, \
                            then the system's. Only the first library loaded in a process counts. NULL/READY only")
                    .default_value(Some(""))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("inference-threads")
                    .nick("Inference threads")
                    .blurb("ONNX Runtime intra-op threads for CPU inference (0 = one per core, 1-256). NULL/READY only")
                    .maximum(256)
                    .default_value(d.inference_threads)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-size")
                    .nick("Batch size")
                    .blurb("Frames per inference call (1-64); larger batches raise GPU throughput and latency. NULL/READY only")
                    .minimum(1)
                    .maximum(64)
                    .default_value(d.batch_size)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("batch-timeout")
                    .nick("Batch timeout (ms)")
                    .blurb("Longest wait in milliseconds for a batch to fill before running it anyway (0-10000); \
                            adds up to this much latency")
                    .maximum(10_000)
                    .default_value(d.batch_timeout_ms)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-in-flight")
                    .nick("Frames in flight")
                    .blurb("Most frames inside the element at once (1-1024, at least batch-size); bounds memory \
                            and the latency reported. NULL/READY only")
                    .minimum(1)
                    .maximum(1024)
                    .default_value(d.max_in_flight)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("workers")
                    .nick("Workers")
                    .blurb("Pre-processing and post-processing threads, each (1-64). NULL/READY only")
                    .minimum(1)
                    .maximum(64)
                    .default_value(d.workers)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("leaky")
                    .nick("Leaky")
                    .blurb("When full, drop the oldest waiting frame (counted, posted as QoS) instead of blocking \
                            upstream; for live sources")
                    .default_value(d.leaky)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("noise-level")
                    .nick("Noise level")
                    .blurb("Noise sigma in 8-bit units (0-255) for models with a sigma input; -1 estimates it per \
                            frame from the image, smoothed over time")
                    .minimum(-1.0)
                    .maximum(255.0)
                    .default_value(d.noise_level)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("output", d.output)
                    .nick("Output")
                    .blurb("What the src pad carries: the denoised frame, or the class colours blended over it")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("overlay-alpha")
                    .nick("Overlay opacity")
                    .blurb("Opacity of the class colours with output=overlay (0 = invisible, 1 = opaque)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.overlay_alpha)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-processed")
                    .nick("Frames processed")
                    .blurb("Frames that came out since start (read-only)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-dropped")
                    .nick("Frames dropped")
                    .blurb("Frames dropped by leaky or QoS since start (read-only)")
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("mean-latency")
                    .nick("Mean latency (ms)")
                    .blurb("Mean time in milliseconds from a frame's arrival to its push (read-only)")
                    .minimum(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("max-latency")
                    .nick("Max latency (ms)")
                    .blurb("Longest time in milliseconds from a frame's arrival to its push (read-only)")
                    .minimum(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("noise-estimate")
                    .nick("Noise sigma in use")
                    .blurb("The noise sigma (8-bit units) fed to the model for the last frame (read-only)")
                    .minimum(0.0)
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("provider")
                    .nick("Provider in use")
                    .blurb("The execution provider the session runs on; empty until the model is loaded (read-only)")
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("All statistics in one structure: processed, dropped, batches, mean-latency-ms, \
                            max-latency-ms, mean-batch-ms (one model run), busy (share of time the model \
                            ran since its first batch: 1 = the device never waited for input), sigma, \
                            provider (read-only)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        let ready_only = matches!(
            name,
            "model"
                | "config"
                | "execution-provider"
                | "device-id"
                | "fp16"
                | "engine-cache-dir"
                | "ort-library"
                | "inference-threads"
                | "batch-size"
                | "max-in-flight"
                | "workers"
        );
        if ready_only && !self.ready_only(name) {
            return;
        }
        let mut s = lock(&self.settings);
        match name {
            "model" => s.model = value.get::<Option<String>>().expect("type checked").unwrap_or_default(),
            "config" => {
                let path = value.get::<Option<String>>().expect("type checked").unwrap_or_default();
                s.config = path.clone();
                drop(s);
                self.apply_config(&path);
            }
            "execution-provider" => s.provider = value.get().expect("type checked"),
            "device-id" => s.device_id = value.get().expect("type checked"),
            "fp16" => s.fp16 = value.get().expect("type checked"),
            "engine-cache-dir" => {
                s.engine_cache_dir = value.get::<Option<String>>().expect("type checked").unwrap_or_default()
            }
            "ort-library" => s.ort_library = value.get::<Option<String>>().expect("type checked").unwrap_or_default(),
            "inference-threads" => s.inference_threads = value.get().expect("type checked"),
            "batch-size" => s.batch_size = value.get().expect("type checked"),
            "batch-timeout" => {
                s.batch_timeout_ms = value.get().expect("type checked");
                self.tunables
                    .set_batch_timeout(Duration::from_millis(s.batch_timeout_ms as u64));
            }
            "max-in-flight" => s.max_in_flight = value.get().expect("type checked"),
            "workers" => s.workers = value.get().expect("type checked"),
            "leaky" => {
                s.leaky = value.get().expect("type checked");
                self.tunables.set_leaky(s.leaky);
            }
            "noise-level" => {
                s.noise_level = value.get().expect("type checked");
                self.tunables.set_noise_level(sigma_01(s.noise_level));
            }
            "output" => {
                s.output = value.get().expect("type checked");
                self.out_tunables
                    .overlay
                    .store(s.output == OutputMode::Overlay, Ordering::Relaxed);
            }
            "overlay-alpha" => {
                s.overlay_alpha = value.get().expect("type checked");
                self.out_tunables
                    .alpha
                    .store((s.overlay_alpha as f32).to_bits(), Ordering::Relaxed);
            }
            other => gst::warning!(CAT, imp = self, "property '{other}' is read-only"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings).clone();
        match pspec.name() {
            "model" => s.model.to_value(),
            "config" => s.config.to_value(),
            "execution-provider" => s.provider.to_value(),
            "device-id" => s.device_id.to_value(),
            "fp16" => s.fp16.to_value(),
            "engine-cache-dir" => s.engine_cache_dir.to_value(),
            "ort-library" => s.ort_library.to_value(),
            "inference-threads" => s.inference_threads.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "batch-timeout" => s.batch_timeout_ms.to_value(),
            "max-in-flight" => s.max_in_flight.to_value(),
            "workers" => s.workers.to_value(),
            "leaky" => s.leaky.to_value(),
            "noise-level" => s.noise_level.to_value(),
            "output" => s.output.to_value(),
            "overlay-alpha" => s.overlay_alpha.to_value(),
            "frames-processed" => self.stats_snapshot().processed.to_value(),
            "frames-dropped" => self.stats_snapshot().dropped.to_value(),
            "mean-latency" => (self.stats_snapshot().mean_latency.as_secs_f64() * 1000.0).to_value(),
            "max-latency" => (self.stats_snapshot().max_latency.as_secs_f64() * 1000.0).to_value(),
            "noise-estimate" => (self.stats_snapshot().sigma as f64).to_value(),
            "provider" => lock(&self.provider).clone().to_value(),
            "stats" => {
                let st = self.stats_snapshot();
                gst::Structure::builder("denoiseseg-stats")
                    .field("processed", st.processed)
                    .field("dropped", st.dropped)
                    .field("batches", st.batches)
                    .field("mean-latency-ms", st.mean_latency.as_secs_f64() * 1000.0)
                    .field("max-latency-ms", st.max_latency.as_secs_f64() * 1000.0)
                    .field("mean-batch-ms", st.mean_batch.as_secs_f64() * 1000.0)
                    .field("busy", st.busy)
                    .field("sigma", st.sigma as f64)
                    .field("provider", lock(&self.provider).clone())
                    .build()
                    .to_value()
            }
            other => unreachable!("no property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("add sink pad");
        obj.add_pad(&self.srcpad).expect("add src pad");
    }
}

impl GstObjectImpl for DenoiseSeg {}

fn raw_caps(formats: &[PixelFormat]) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(formats.iter().map(|f| gst_video::VideoFormat::from_string(f.name())))
        .build()
}

impl ElementImpl for DenoiseSeg {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Denoise and segment",
                "Filter/Effect/Video/Analyzer",
                "Joint denoising and semantic segmentation of video with an ONNX model on ONNX Runtime \
                 (TensorRT, CUDA or CPU), through a multi-threaded frame queue",
                "denoiseseg developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = raw_caps(PixelFormat::ALL);
            let mask_caps = gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::Gray8)
                .build();
            vec![
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps)
                    .expect("sink template"),
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps)
                    .expect("src template"),
                gst::PadTemplate::new("mask", gst::PadDirection::Src, gst::PadPresence::Request, &mask_caps)
                    .expect("mask template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        _name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        if templ.name_template() != "mask" {
            return None;
        }
        let mut slot = lock(&self.mask_pad);
        if slot.is_some() {
            gst::warning!(CAT, imp = self, "the mask pad was already requested");
            return None;
        }
        let pad = gst::Pad::builder_from_template(templ)
            .name("mask")
            .event_function(|_pad, parent, event| {
                DenoiseSeg::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| match event.view() {
                        gst::EventView::Qos(_) => true,
                        _ => imp.sinkpad.push_event(event),
                    },
                )
            })
            .build();
        if self.obj().current_state() > gst::State::Ready {
            let _ = pad.set_active(true);
        }
        *slot = Some(pad.clone());
        drop(slot);
        self.obj().add_pad(&pad).ok()?;
        Some(pad)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let mut slot = lock(&self.mask_pad);
        if slot.as_ref() == Some(pad) {
            *slot = None;
        }
        drop(slot);
        let _ = pad.set_active(false);
        let _ = self.obj().remove_pad(pad);
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::debug!(CAT, imp = self, "state change {transition:?}");
        if transition == gst::StateChange::ReadyToPaused {
            if let Err(msg) = self.start() {
                self.post_error_message(msg);
                return Err(gst::StateChangeError);
            }
        }
        if transition == gst::StateChange::PausedToReady {
            // Wake a chain blocked on a full queue and the src task before pads deactivate.
            if let Some((queue, _)) = self.state_snapshot() {
                queue.flush_start();
            }
        }
        let result = self.parent_change_state(transition);
        if transition == gst::StateChange::PausedToReady
            || (result.is_err() && transition == gst::StateChange::ReadyToPaused)
        {
            self.stop();
        }
        result
    }
}
