//! # `addnoise`
//!
//! Adds seeded, reproducible synthetic noise to raw video, so that denoisers and
//! the `denoiseseg` element can be tested and evaluated on clean footage.
//!
//! * `mode=gaussian`: additive white Gaussian noise of standard deviation `sigma`
//!   (8-bit units), the same on every channel, independent per sample.
//! * `mode=poisson-gaussian`: signal-dependent sensor noise. A sample of clean value
//!   `v` becomes `gain * Poisson(v / gain) + N(0, sigma²)`: photon shot noise of
//!   variance `gain * v` plus read noise `sigma`.
//! * `correlation` (either mode): the noise is spatially correlated, as a camera's
//!   demosaicing and image processing leave it, by filtering the noise field with a
//!   Gaussian of that standard deviation in pixels (each sample keeps its noise
//!   level). Add a codec after the element (`x264enc`, `jpegenc`) for the
//!   compression a camera applies; `denoiseseg eval --noise camera --codec h264`
//!   does both.
//!
//! Results are rounded and clamped to 0..255 as a camera delivers them. Alpha and
//! padding bytes pass unchanged.
//!
//! Reproducibility: the noise of a frame is a pure function of `seed`, the frame's
//! index and its size and format. The index counts the buffers the element has
//! received since it started (READY to PAUSED) or since the last flush-stop (a
//! seek): so the same stream played twice with the same seed gives bit-identical
//! output, and every frame of a stream gets different noise. Samples are drawn in
//! R, G, B order whatever the byte order, so an RGB and a BGR copy of a stream get
//! the same noise per colour. After a seek the
//! indices start again from 0. Frames that pass through unchanged (below) are
//! counted too, so changing `sigma` mid-stream does not shift the later frames'
//! noise.
//!
//! `sigma=0` in Gaussian mode (or `sigma=0` and `gain=0` in Poisson-Gaussian mode)
//! makes the element a passthrough: buffers are pushed untouched, without a copy.
//! Every property can be changed while playing; a change applies from the next
//! frame.
//!
//! ## Example
//!
//! ```text
//! gst-launch-1.0 videotestsrc num-buffers=300 ! video/x-raw,format=RGBx,width=1280,height=720 \
//!     ! addnoise sigma=25 seed=7 ! videoconvert ! autovideosink
//! gst-launch-1.0 filesrc location=clean.mp4 ! decodebin ! videoconvert ! video/x-raw,format=RGB \
//!     ! addnoise mode=poisson-gaussian sigma=4 gain=2 correlation=0.7 ! videoconvert ! x264enc \
//!     ! mp4mux ! filesink location=noisy.mp4
//! ```
//!
//! ## Pads and caps
//!
//! * `sink` and `src` (always): `video/x-raw` in system memory, formats RGB, BGR,
//!   RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB, ABGR and GRAY8, any size and frame
//!   rate; the output caps equal the input caps. Buffers are modified in place;
//!   timestamps, duration, offsets, flags and metas are kept.
use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;
use gst_video::subclass::prelude::*;

use denoiseseg::noise::{add_noise_interleaved, NoiseKind, NoiseParams};

use super::AddNoiseMode;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "addnoise",
        gst::DebugColorFlags::empty(),
        Some("Seeded synthetic video noise"),
    )
});

const SIGMA_MAX: f64 = 255.0;
const GAIN_MAX: f64 = 255.0;

/// Property values; `Default` is the single source of the defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Settings {
    sigma: f64,
    mode: AddNoiseMode,
    gain: f64,
    correlation: f64,
    seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sigma: 25.0,
            mode: AddNoiseMode::Gaussian,
            gain: 1.0,
            correlation: 0.0,
            seed: 0,
        }
    }
}

impl Settings {
    fn params(&self) -> NoiseParams {
        NoiseParams {
            kind: match self.mode {
                AddNoiseMode::Gaussian => NoiseKind::Gaussian,
                AddNoiseMode::PoissonGaussian => NoiseKind::PoissonGaussian,
            },
            sigma: self.sigma as f32,
            gain: self.gain as f32,
            correlation: self.correlation as f32,
        }
    }
}

/// Where the noisy samples are in a pixel of the negotiated format.
#[derive(Debug, Clone, Copy)]
struct Layout {
    pixel_stride: usize,
    offsets: [usize; 3],
    channels: usize,
}

/// Streaming state, made in `start` and dropped in `stop`.
#[derive(Debug, Default)]
struct State {
    layout: Option<Layout>,
    /// Index the next buffer gets.
    next_frame: u64,
    /// Index of the buffer being processed (set in `before_transform`).
    current_frame: u64,
}

#[derive(Default)]
pub struct AddNoise {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

impl AddNoise {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Turns passthrough on exactly when the settings add no noise.
    fn update_passthrough(&self, settings: &Settings) {
        let identity = settings.params().is_identity();
        let obj = self.obj();
        if obj.is_passthrough() != identity {
            gst::debug!(CAT, imp = self, "passthrough {}", identity);
            obj.set_passthrough(identity);
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for AddNoise {
    const NAME: &'static str = "GstAddNoise";
    type Type = super::AddNoise;
    type ParentType = gst_video::VideoFilter;
}

impl ObjectImpl for AddNoise {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecDouble::builder("sigma")
                    .nick("Sigma")
                    .blurb(
                        "Standard deviation of the Gaussian noise (the read noise in \
                         poisson-gaussian mode), in 8-bit units, 0 to 255; 0 in gaussian \
                         mode passes frames through untouched",
                    )
                    .minimum(0.0)
                    .maximum(SIGMA_MAX)
                    .default_value(d.sigma)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("mode", d.mode)
                    .nick("Mode")
                    .blurb(
                        "Noise model: gaussian (additive, signal-independent) or \
                         poisson-gaussian (shot noise scaled by gain plus read noise sigma)",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("gain")
                    .nick("Gain")
                    .blurb(
                        "Poisson-gaussian mode only: shot-noise scale in 8-bit units per \
                         photo-electron, 0 to 255; a clean value v gets shot-noise variance \
                         gain*v (gain 1 at mid grey 128: std 11.3); 0 disables shot noise",
                    )
                    .minimum(0.0)
                    .maximum(GAIN_MAX)
                    .default_value(d.gain)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("correlation")
                    .nick("Spatial correlation")
                    .blurb(
                        "Standard deviation in pixels (0 to 1.5) of the Gaussian the noise field \
                         is filtered with, as demosaicing correlates a camera's noise; each sample \
                         keeps its noise level; 0 is white noise. With it, shot noise is drawn \
                         from its Gaussian approximation",
                    )
                    .minimum(0.0)
                    .maximum(1.5)
                    .default_value(d.correlation)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("seed")
                    .nick("Seed")
                    .blurb(
                        "Seed of the noise, any 64-bit value: the same seed gives the same \
                         noise for the same stream (frames counted from start or flush)",
                    )
                    .default_value(d.seed)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings();
        match pspec.name() {
            "sigma" => {
                let sigma = value.get::<f64>().expect("type checked upstream");
                gst::info!(CAT, imp = self, "sigma {} -> {}", settings.sigma, sigma);
                settings.sigma = sigma;
            }
            "mode" => {
                let mode = value.get::<AddNoiseMode>().expect("type checked upstream");
                gst::info!(CAT, imp = self, "mode {:?} -> {:?}", settings.mode, mode);
                settings.mode = mode;
            }
            "gain" => {
                let gain = value.get::<f64>().expect("type checked upstream");
                gst::info!(CAT, imp = self, "gain {} -> {}", settings.gain, gain);
                settings.gain = gain;
            }
            "correlation" => {
                let correlation = value.get::<f64>().expect("type checked upstream");
                gst::info!(
                    CAT,
                    imp = self,
                    "correlation {} -> {}",
                    settings.correlation,
                    correlation
                );
                settings.correlation = correlation;
            }
            "seed" => {
                let seed = value.get::<u64>().expect("type checked upstream");
                gst::info!(CAT, imp = self, "seed {} -> {}", settings.seed, seed);
                settings.seed = seed;
            }
            other => unreachable!("unknown property {other}"),
        }
        let snapshot = *settings;
        drop(settings);
        self.update_passthrough(&snapshot);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings();
        match pspec.name() {
            "sigma" => settings.sigma.to_value(),
            "mode" => settings.mode.to_value(),
            "gain" => settings.gain.to_value(),
            "correlation" => settings.correlation.to_value(),
            "seed" => settings.seed.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let settings = *self.settings();
        self.update_passthrough(&settings);
    }
}

impl GstObjectImpl for AddNoise {}

impl ElementImpl for AddNoise {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Add noise",
                "Filter/Effect/Video",
                "Adds seeded, reproducible Gaussian or Poisson-Gaussian noise to raw video",
                "The denoiseseg developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            use gst_video::VideoFormat as F;
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list([
                    F::Rgb,
                    F::Bgr,
                    F::Rgbx,
                    F::Bgrx,
                    F::Xrgb,
                    F::Xbgr,
                    F::Rgba,
                    F::Bgra,
                    F::Argb,
                    F::Abgr,
                    F::Gray8,
                ])
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

impl BaseTransformImpl for AddNoise {
    const MODE: gst_base::subclass::BaseTransformMode = gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        *self.state() = Some(State::default());
        let settings = *self.settings();
        self.update_passthrough(&settings);
        gst::debug!(CAT, imp = self, "started with {:?}", settings);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state() = None;
        gst::debug!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStop(_) = event.view() {
            // Serialized with the streaming thread: no buffer is in flight here.
            if let Some(state) = self.state().as_mut() {
                gst::debug!(CAT, imp = self, "flush-stop: frame index back to 0");
                state.next_frame = 0;
            }
        }
        self.parent_sink_event(event)
    }

    /// Called for every buffer, before the passthrough decision: assigns the frame
    /// index and applies the current settings' passthrough.
    fn before_transform(&self, inbuf: &gst::BufferRef) {
        let settings = *self.settings();
        self.update_passthrough(&settings);
        if let Some(state) = self.state().as_mut() {
            state.current_frame = state.next_frame;
            state.next_frame += 1;
            gst::trace!(
                CAT,
                imp = self,
                "buffer {:?} is frame {}",
                inbuf.pts(),
                state.current_frame
            );
        }
        self.parent_before_transform(inbuf);
    }
}

impl VideoFilterImpl for AddNoise {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &gst_video::VideoInfo,
        outcaps: &gst::Caps,
        out_info: &gst_video::VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        let finfo = in_info.format_info();
        if finfo.n_planes() != 1 || finfo.bits() != 8 {
            return Err(gst::loggable_error!(CAT, "unsupported format {:?}", in_info.format()));
        }
        let channels = if finfo.is_gray() { 1 } else { 3 };
        let pixel_stride = finfo.pixel_stride()[0] as usize;
        let mut offsets = [0usize; 3];
        for (o, &p) in offsets.iter_mut().zip(finfo.poffset()).take(channels) {
            *o = p as usize;
        }
        if pixel_stride == 0 || offsets[..channels].iter().any(|&o| o >= pixel_stride) {
            return Err(gst::loggable_error!(CAT, "unexpected layout of {:?}", in_info.format()));
        }
        let layout = Layout {
            pixel_stride,
            offsets,
            channels,
        };
        gst::debug!(
            CAT,
            imp = self,
            "{:?} {}x{}: {:?}",
            in_info.format(),
            in_info.width(),
            in_info.height(),
            layout
        );
        match self.state().as_mut() {
            Some(state) => state.layout = Some(layout),
            None => return Err(gst::loggable_error!(CAT, "caps set before start")),
        }
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }

    fn transform_frame_ip(
        &self,
        frame: &mut gst_video::VideoFrameRef<&mut gst::BufferRef>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = *self.settings();
        let (layout, frame_index) = match self.state().as_ref() {
            Some(State {
                layout: Some(layout),
                current_frame,
                ..
            }) => (*layout, *current_frame),
            _ => {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("received a frame before caps"));
                return Err(gst::FlowError::NotNegotiated);
            }
        };
        let params = settings.params();
        if params.is_identity() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let (width, height) = (frame.width() as usize, frame.height() as usize);
        let stride = frame.plane_stride()[0];
        if stride <= 0 {
            gst::element_imp_error!(self, gst::StreamError::Format, ("unsupported row stride {}", stride));
            return Err(gst::FlowError::Error);
        }
        let data = frame.plane_data_mut(0).map_err(|err| {
            gst::element_imp_error!(self, gst::ResourceError::Write, ("cannot map the frame: {}", err));
            gst::FlowError::Error
        })?;
        add_noise_interleaved(
            data,
            width,
            height,
            stride as usize,
            layout.pixel_stride,
            &layout.offsets[..layout.channels],
            &params,
            settings.seed,
            frame_index,
        );
        Ok(gst::FlowSuccess::Ok)
    }
}
