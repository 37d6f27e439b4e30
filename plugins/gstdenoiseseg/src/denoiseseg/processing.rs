//! Frame processing on the queue's workers: caps, stamps, the Processor, fault reports.
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use denoiseseg::frame::{FrameLayout, PixelFormat, YuvMatrix};
use denoiseseg::queue::Processor;
use denoiseseg::tensors::{OutputFaults, Tensors};
use denoiseseg::{convert, Error};
use gst::glib;
use gst::prelude::*;

use super::classmap::{ClassMaps, Deferred};
use super::MASK_META;
use super::*;

/// Largest frame accepted, in pixels (a 8K frame is 33 Mpx).
const MAX_PIXELS: usize = 64 * 1024 * 1024;

/// What a caps event fixes for the frames after it.
pub(super) struct FrameInfo {
    pub(super) info: gst_video::VideoInfo,
    /// Layout of buffers this element allocates (the default layout of `info`).
    pub(super) out_layout: FrameLayout,
    pub(super) mask_info: gst_video::VideoInfo,
    /// The caps of `mask` for these frames.
    pub(super) mask_caps: gst::Caps,
    pub(super) out_pool: gst::BufferPool,
    pub(super) mask_pool: gst::BufferPool,
    pub(super) format: PixelFormat,
}

impl Drop for FrameInfo {
    fn drop(&mut self) {
        let _ = self.out_pool.set_active(false);
        let _ = self.mask_pool.set_active(false);
    }
}

pub(super) fn make_pool(caps: &gst::Caps, size: usize) -> Result<gst::BufferPool, glib::BoolError> {
    let pool = gst::BufferPool::new();
    let mut config = pool.config();
    config.set_params(Some(caps), size as u32, 0, 0);
    pool.set_config(config)?;
    pool.set_active(true)?;
    Ok(pool)
}

pub(super) fn layout_of(
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
    pub(super) fn new(caps: &gst::Caps) -> Result<FrameInfo, String> {
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
pub(super) struct Frame {
    /// The mapped input; released after pre-processing unless the output needs it.
    pub(super) input: Option<gst::MappedBuffer<gst::buffer::Readable>>,
    pub(super) layout: FrameLayout,
    pub(super) info: Arc<FrameInfo>,
    /// The input buffer's timestamps and flags, carried to the output.
    pub(super) stamp: Stamp,
    /// The class map meta the input buffer carried (from an upstream denoiseseg).
    pub(super) upstream_mask: Option<gst::Structure>,
    /// The input's other metas that stay true of the output ([`carried_metas`]), on an
    /// empty buffer; none when it had none (no allocation per frame then).
    pub(super) metas: Option<gst::Buffer>,
}

/// Copies of the metas of `input` that describe the frame and still hold for the
/// output, which keeps the frame's timing, size and orientation: timecodes, reference
/// timestamps, captions, SEI user data, regions of interest, crops, and any meta without
/// tags. As GStreamer's video filters decide, a meta tagged with anything but `video`,
/// `size` or `orientation` (colour space, memory) is left behind; so are the video meta
/// (the output's own layout) and an upstream element's class map (`skip`: this element
/// carries or replaces it itself).
pub(super) fn carried_metas(input: &gst::BufferRef, skip: Option<glib::Type>) -> Option<gst::Buffer> {
    let mut carrier: Option<gst::Buffer> = None;
    for meta in input.iter_meta::<gst::Meta>() {
        let api = meta.api();
        if api == <gst_video::VideoMeta as gst::MetaAPI>::meta_api()
            || api == <gst::ParentBufferMeta as gst::MetaAPI>::meta_api()
            || Some(api) == skip
            || meta
                .tags()
                .iter()
                .any(|t| !matches!(t.as_str(), "video" | "size" | "orientation"))
        {
            continue;
        }
        let c = carrier.get_or_insert_with(gst::Buffer::new);
        if let Some(c) = c.get_mut() {
            // A meta without a copy transform is left behind, as a buffer copy would.
            let _ = meta.transform(c, &gst::meta::MetaTransformCopy::new(..));
        }
    }
    carrier.filter(|c| c.iter_meta::<gst::Meta>().next().is_some())
}

/// Adds copies of the carried metas to an output buffer.
fn add_metas(carrier: Option<&gst::Buffer>, dst: &mut gst::BufferRef) {
    for meta in carrier.into_iter().flat_map(|c| c.iter_meta::<gst::Meta>()) {
        let _ = meta.transform(dst, &gst::meta::MetaTransformCopy::new(..));
    }
}

/// What an output buffer keeps of its input buffer: timestamps, offsets and flags.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stamp {
    pub(super) pts: Option<gst::ClockTime>,
    pub(super) dts: Option<gst::ClockTime>,
    pub(super) duration: Option<gst::ClockTime>,
    pub(super) offset: u64,
    pub(super) offset_end: u64,
    pub(super) flags: gst::BufferFlags,
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

    pub(super) fn of(b: &gst::BufferRef) -> Stamp {
        Stamp {
            pts: b.pts(),
            dts: b.dts(),
            duration: b.duration(),
            offset: b.offset(),
            offset_end: b.offset_end(),
            flags: b.flags() & Self::FLAGS,
        }
    }

    pub(super) fn apply(&self, dst: &mut gst::BufferRef) {
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
pub(super) struct Out {
    pub(super) buffer: gst::Buffer,
    pub(super) mask: Option<gst::Buffer>,
    /// The caps the frame was processed under (not the latest ones: a caps change may
    /// have been queued behind it).
    pub(super) info: Arc<FrameInfo>,
    /// The class map still to stabilize, blend and attach, in frame order (`classmap.rs`).
    pub(super) deferred: Option<Deferred>,
}

/// Serialized items travelling through the queue between frames.
pub(super) enum QEvent {
    Gst(gst::Event),
    /// A caps event, with what it fixes for the frames after it.
    Caps(gst::Event, Arc<FrameInfo>),
    /// A DRAIN query: answered once every frame before it has been pushed.
    Drain(crossbeam_channel::Sender<()>),
}

pub(super) struct Proc {
    pub(super) size_multiple: usize,
    /// The palette and what the class map meta carries.
    pub(super) maps: Arc<ClassMaps>,
    /// The model does not denoise: the input is the output image.
    pub(super) keep_input: bool,
    pub(super) tunables: Arc<LiveTunables>,
    /// Where invalid model outputs are reported.
    pub(super) element: glib::WeakRef<super::super::DenoiseSeg>,
    /// The kinds of invalid output already reported since start (bit 0: non-finite
    /// denoised values, 1: NaN logits, 2: class ids out of range).
    pub(super) warned: AtomicU8,
    /// Name of class 0, which invalid class ids become.
    pub(super) class0: String,
}

impl Proc {
    /// Reports what was invalid in a frame's model outputs, and how the engine mended
    /// it, once per kind until the element stops: an element warning, which also logs.
    pub(super) fn report_faults(&self, faults: &OutputFaults, pts: Option<gst::ClockTime>) {
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
                    self.maps.classes, self.class0
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
        let passed_through = self.keep_input && !overlay;
        if !passed_through && !frame.layout.format.has_alpha() {
            // Release the upstream buffer now: hardware decoders' pools stay full. A
            // frame with alpha keeps it until its output takes the input's alpha.
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
        let mask = if t.has_labels() {
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
            let mask_mut = mask.get_mut().expect("writable");
            frame.stamp.apply(mask_mut);
            add_metas(frame.metas.as_ref(), mask_mut);
            Some(mask)
        } else {
            None
        };

        let overlay = self.tunables.overlay.load(Ordering::Relaxed);
        let alpha = f64::from_bits(self.tunables.alpha.load(Ordering::Relaxed)) as f32;
        // Stabilizing the class map needs frame order: the src pad task finishes it.
        let deferred = (t.has_labels() && self.tunables.class_confirm.load(Ordering::Relaxed) > 1).then(|| Deferred {
            maps: self.maps.clone(),
            alpha: overlay.then_some(alpha),
        });
        let blend_now = overlay && t.has_labels() && deferred.is_none();
        // passed_through: the input buffer itself, which still has its metas.
        let (mut buffer, passed_through) = match frame.input {
            Some(input) if self.keep_input && !overlay => (input.into_buffer(), true),
            input => {
                // Packed RGB: blend over the 8-bit frame, as segoverlay does, so both
                // give the same bytes; YUV: blend before conversion.
                let blend_packed = blend_now && !info.format.is_yuv();
                if blend_now && info.format.is_yuv() {
                    let (pw, ph) = (t.pw, t.ph);
                    convert::blend_labels(&mut t.image, pw, ph, w, h, &t.labels, pw, &self.maps.palette, alpha);
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
                    if let Some(input) = &input {
                        convert::copy_alpha(input.as_slice(), &frame.layout, map.as_mut_slice(), &info.out_layout)?;
                    }
                    if blend_packed {
                        convert::blend_labels_frame(
                            map.as_mut_slice(),
                            &info.out_layout,
                            &t.labels,
                            t.pw,
                            &self.maps.palette,
                            alpha,
                        )?;
                    }
                }
                (out, false)
            }
        };
        {
            let b = buffer.make_mut();
            frame.stamp.apply(b);
            if !passed_through {
                add_metas(frame.metas.as_ref(), b);
            }
            // One class map meta per buffer, the last segmenting element's: a passed-through
            // input buffer (segmentation-only model) may carry an upstream element's.
            while let Ok(old) = gst::meta::CustomMeta::from_mut_buffer(b, MASK_META) {
                if old.remove().is_err() {
                    break;
                }
            }
            if let Some(mask) = &mask {
                if deferred.is_none() {
                    self.maps.attach_meta(b, mask, info).map_err(Error::Frame)?;
                }
            } else if let Some(upstream) = frame.upstream_mask {
                // A denoise-only model keeps the frame geometry: the upstream class map
                // still describes the output frame.
                let mut meta = gst::meta::CustomMeta::add(b, MASK_META)
                    .map_err(|e| Error::Frame(format!("cannot attach the class map meta: {e}")))?;
                let s = meta.mut_structure();
                for (field, value) in upstream.iter() {
                    s.set_value(field, value.clone());
                }
            }
        }
        Ok(Out {
            buffer,
            mask,
            info: frame.info,
            deferred,
        })
    }
}
