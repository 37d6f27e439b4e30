//! # `segoverlay`
//!
//! Draws the class map of the `denoiseseg` element over raw video: each buffer's
//! `DenoisesegMaskMeta` (class ids, size and palette, attached by `denoiseseg` to
//! every buffer it outputs) is blended over the pixels in place, with the class
//! colours of the model. The meta survives a tee, queues and buffer copies, so one
//! `denoiseseg` can feed several branches and any of them (or the noisy input, if
//! the meta is added back, e.g. by an app) can show the classes without running the
//! model twice.
//!
//! * Default: every pixel whose class id has a colour becomes
//!   `round((1 − alpha)·pixel + alpha·colour)` per channel, with exactly the
//!   arithmetic of `denoiseseg output=overlay` (the same `alpha` gives the same
//!   bytes as `overlay-alpha` there). Class ids without a colour (e.g. 255) keep
//!   the pixel.
//! * `outline=true`: only the class boundaries are drawn, 1 pixel wide and opaque
//!   (a pixel whose class differs from its left or upper neighbour's takes its
//!   class colour); everything else is left as it is.
//!
//! Buffers pass through untouched, without a copy, when `alpha` is 0, when they
//! carry no meta, or when the meta does not fit the frame (its size differs from the
//! caps' size, or it is malformed: warned once per start). Alpha/x bytes and row
//! padding are never written. Buffers are modified in place: a buffer that is not
//! writable (e.g. after a tee) is copied first by the base class, metas included.
//! Both properties can be changed while playing; a change applies from the next
//! frame.
//!
//! ## Example
//!
//! The mosaic view: the denoised video and, beside it, the same with class colours,
//! from one inference:
//!
//! ```text
//! gst-launch-1.0 filesrc location=dashcam.mp4 ! decodebin ! videoconvert ! video/x-raw,format=RGBx \
//!     ! denoiseseg ! tee name=t \
//!     t. ! queue ! videoconvert ! autovideosink \
//!     t. ! queue ! segoverlay alpha=0.5 ! videoconvert ! autovideosink
//! ```
//!
//! ## Pads and caps
//!
//! * `sink` and `src` (always): `video/x-raw` in system memory, formats RGB, BGR,
//!   RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB and ABGR, any size and frame rate; the
//!   output caps equal the input caps. Timestamps, duration, offsets, flags and
//!   metas are kept.
use std::sync::{LazyLock, Mutex, MutexGuard};

use denoiseseg::convert;
use denoiseseg::frame::{FrameLayout, PixelFormat};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use crate::denoiseseg::MASK_META;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segoverlay",
        gst::DebugColorFlags::empty(),
        Some("Class map overlay from denoiseseg's meta"),
    )
});

/// Property values; `Default` is the single source of the defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Settings {
    alpha: f64,
    outline: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            alpha: 0.5,
            outline: false,
        }
    }
}

/// Streaming state, made in `start` and dropped in `stop`.
#[derive(Debug, Default)]
struct State {
    /// Negotiated format and size (set in `set_info`).
    video: Option<(PixelFormat, u32, u32)>,
    warned_size: bool,
    warned_meta: bool,
}

/// The class map of one buffer, as its meta holds it (references, no copies).
struct ClassMap {
    mask: gst::Buffer,
    width: u32,
    height: u32,
    stride: u32,
    palette: glib::Bytes,
}

/// Reads the meta of `buffer`: `Ok(None)` without one, `Err` when it is malformed.
fn class_map(buffer: &gst::BufferRef) -> Result<Option<ClassMap>, String> {
    let Ok(meta) = gst::meta::CustomMeta::from_buffer(buffer, MASK_META) else {
        return Ok(None);
    };
    let s = meta.structure();
    let map = ClassMap {
        mask: s.get::<gst::Buffer>("mask").map_err(|e| format!("mask: {e}"))?,
        width: s.get::<u32>("width").map_err(|e| format!("width: {e}"))?,
        height: s.get::<u32>("height").map_err(|e| format!("height: {e}"))?,
        stride: s.get::<u32>("stride").map_err(|e| format!("stride: {e}"))?,
        palette: s.get::<glib::Bytes>("palette").map_err(|e| format!("palette: {e}"))?,
    };
    let (w, h, stride) = (map.width as usize, map.height as usize, map.stride as usize);
    if !map.palette.len().is_multiple_of(3) || map.palette.len() > 3 * 256 {
        return Err(format!(
            "palette of {} bytes is not 3 bytes for each of at most 256 classes",
            map.palette.len()
        ));
    }
    let needed = stride.checked_mul(h.saturating_sub(1)).and_then(|v| v.checked_add(w));
    if w == 0 || h == 0 || stride < w || needed.is_none_or(|n| n > map.mask.size()) {
        return Err(format!(
            "class map {w}x{h} with rows of {stride} bytes does not fit its {}-byte buffer",
            map.mask.size()
        ));
    }
    Ok(Some(map))
}

#[derive(Default)]
pub struct SegOverlay {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl SegOverlay {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when `buffer` carries a class map of the negotiated size; warns once per
    /// start about a malformed meta and once about a size mismatch.
    fn fits(&self, buffer: &gst::BufferRef) -> bool {
        let map = match class_map(buffer) {
            Ok(Some(map)) => map,
            Ok(None) => {
                gst::trace!(
                    CAT,
                    imp = self,
                    "buffer {:?} has no class map: passed through",
                    buffer.pts()
                );
                return false;
            }
            Err(err) => {
                let mut state = self.state();
                if let Some(state) = state.as_mut().filter(|s| !s.warned_meta) {
                    state.warned_meta = true;
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Format,
                        (
                            "malformed {} meta ({}): such frames pass through unchanged",
                            MASK_META,
                            err
                        )
                    );
                }
                return false;
            }
        };
        let mut state = self.state();
        let Some(state) = state.as_mut() else {
            return false;
        };
        let Some((_, width, height)) = state.video else {
            return false;
        };
        if (map.width, map.height) != (width, height) {
            if !state.warned_size {
                state.warned_size = true;
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    (
                        "class map is {}x{} but the frames are {}x{} (scaled after denoiseseg?): such frames \
                         pass through unchanged",
                        map.width,
                        map.height,
                        width,
                        height
                    )
                );
            }
            return false;
        }
        true
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SegOverlay {
    const NAME: &'static str = "GstSegOverlay";
    type Type = super::SegOverlay;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for SegOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecDouble::builder("alpha")
                    .nick("Opacity")
                    .blurb(
                        "Opacity of the class colours, 0 to 1: each pixel becomes \
                         (1 - alpha) * pixel + alpha * colour, as denoiseseg's overlay-alpha; \
                         0 passes frames through untouched, 1 paints the colours opaque",
                    )
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.alpha)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("outline")
                    .nick("Outline")
                    .blurb(
                        "Draw only the class boundaries, 1 pixel wide and opaque (alpha only \
                         switches them off at 0), instead of blending every pixel",
                    )
                    .default_value(d.outline)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings();
        match pspec.name() {
            "alpha" => {
                let alpha = value.get::<f64>().expect("type checked upstream");
                gst::info!(CAT, imp = self, "alpha {} -> {}", settings.alpha, alpha);
                settings.alpha = alpha;
            }
            "outline" => {
                let outline = value.get::<bool>().expect("type checked upstream");
                gst::info!(CAT, imp = self, "outline {} -> {}", settings.outline, outline);
                settings.outline = outline;
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings();
        match pspec.name() {
            "alpha" => settings.alpha.to_value(),
            "outline" => settings.outline.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }
}

impl GstObjectImpl for SegOverlay {}

impl ElementImpl for SegOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Segmentation overlay",
                "Filter/Effect/Video",
                "Blends the class map that denoiseseg attaches to each buffer over the video, in place, \
                 on any branch after a tee",
                "The denoiseseg developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(
                    PixelFormat::ALL
                        .iter()
                        .filter(|f| !f.is_yuv())
                        .map(|f| gst_video::VideoFormat::from_string(f.name())),
                )
                .build();
            let src = gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps)
                .expect("valid src pad template");
            let sink = gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps)
                .expect("valid sink pad template");
            vec![src, sink]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for SegOverlay {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *self.state() = Some(State::default());
        gst::debug!(CAT, imp = self, "started with {:?}", *self.settings());
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state() = None;
        gst::debug!(CAT, imp = self, "stopped");
        Ok(())
    }

    /// Called for every buffer, before the passthrough decision: frames with nothing
    /// to draw pass through without being copied or mapped.
    fn before_transform(&self, inbuf: &gst::BufferRef) {
        let alpha = self.settings().alpha;
        let draw = alpha > 0.0 && self.fits(inbuf);
        let obj = self.obj();
        if obj.is_passthrough() == draw {
            gst::debug!(CAT, imp = self, "passthrough {}", !draw);
            obj.set_passthrough(!draw);
        }
        self.parent_before_transform(inbuf);
    }
}

impl VideoFilterImpl for SegOverlay {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        let format = PixelFormat::from_name(in_info.format().to_str())
            .filter(|f| !f.is_yuv())
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported format {:?}", in_info.format()))?;
        gst::debug!(CAT, imp = self, "{format} {}x{}", in_info.width(), in_info.height());
        match self.state().as_mut() {
            Some(state) => state.video = Some((format, in_info.width(), in_info.height())),
            None => return Err(gst::loggable_error!(CAT, "caps set before start")),
        }
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }

    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = *self.settings();
        let Some((format, width, height)) = self.state().as_ref().and_then(|s| s.video) else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("received a frame before caps"));
            return Err(gst::FlowError::NotNegotiated);
        };
        // before_transform chose to draw; the meta is read again (references only).
        let map = match class_map(frame.buffer()) {
            Ok(Some(map)) if (map.width, map.height) == (width, height) => map,
            _ => return Ok(gst::FlowSuccess::Ok),
        };
        if settings.alpha <= 0.0 {
            return Ok(gst::FlowSuccess::Ok);
        }
        let stride = frame.plane_stride()[0];
        if stride <= 0 {
            gst::element_imp_error!(self, gst::StreamError::Format, ("unsupported row stride {}", stride));
            return Err(gst::FlowError::Error);
        }
        let mask = map.mask.map_readable().map_err(|err| {
            gst::element_imp_error!(self, gst::ResourceError::Read, ("cannot map the class map: {}", err));
            gst::FlowError::Error
        })?;
        let (palette, _) = map.palette.as_chunks::<3>();
        let data = frame.plane_data_mut(0).map_err(|err| {
            gst::element_imp_error!(self, gst::ResourceError::Write, ("cannot map the frame: {}", err));
            gst::FlowError::Error
        })?;
        let mut layout = FrameLayout::packed(format, width as usize, height as usize);
        layout.offsets[0] = 0;
        layout.strides[0] = stride as usize;
        layout.size = data.len();
        let result = if settings.outline {
            convert::outline_labels_frame(data, &layout, &mask, map.stride as usize, palette)
        } else {
            convert::blend_labels_frame(
                data,
                &layout,
                &mask,
                map.stride as usize,
                palette,
                settings.alpha as f32,
            )
        };
        result.map_err(|err| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("cannot draw the class map: {}", err));
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
