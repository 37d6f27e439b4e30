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
//!   without linking `mask`. The meta survives buffer copies. A buffer carries at most
//!   one such meta, from the last segmenting element: in a chain such as
//!   `denoiseseg model=denoiser.onnx ! denoiseseg model=segmenter.onnx` a
//!   segmenting element replaces any class map meta its input carried (a
//!   segmentation-only model passes the frame itself through unchanged, so the output
//!   is the first element's denoised frame with the second's class map), and a
//!   denoise-only element attaches none of its own but keeps one its input carried
//!   (the frame's geometry is unchanged, so it still describes the frame); `overlay`
//!   blends only the element's own class map.
//! - `mask` (request): GRAY8 frames of class ids, same size and timestamps (none for a
//!   denoise-only model). One thread pushes both `src` and `mask`: as after a tee or a
//!   demuxer, give each branch a `queue` when both are linked, or the sinks never
//!   preroll.
//!
//! Frames go through the engine's frame queue (pre-processing workers, one batching
//! inference thread, post-processing workers, reordering); this element's src pad task
//! is the single pusher. Serialized events travel through the queue in order, EOS
//! drains it, flushes discard what is in flight, and with `leaky` the oldest waiting
//! frame is dropped rather than blocking a live source.
//!
//! With `model-instance-id`, the elements of a process with the same id share one
//! inference thread and ONNX Runtime session (the engine), whose batches hold frames
//! from all of them; each element keeps its own queue (order, flush, EOS, leaky drops,
//! latency, counts). See README's "many cameras" paragraph and docs/design.md.
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
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use denoiseseg::frame::PixelFormat;
use denoiseseg::model::ModelSpec;
use denoiseseg::queue::{self, FrameQueue, Stats, Tunables};
use denoiseseg::stabilize::ClassStabilizer;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{OutputMode, ProviderChoice, MASK_META};

// The element by concern, as child modules of this one (they see its private items):
// properties.rs: settings, tunables, param specs, set/get, presets; session.rs: start
// and stop (model, ONNX Runtime, queue, session build); streaming.rs: chain, events,
// queries, QoS, latency, the src task; processing.rs: what the queue's workers run;
// classmap.rs: the class map meta and its stabilization over time, in frame order;
// mask.rs: the `mask` request pad. This file: the struct and the GObject/element glue.
#[path = "classmap.rs"]
mod classmap;
#[path = "mask.rs"]
mod mask;
#[path = "processing.rs"]
mod processing;
#[path = "properties.rs"]
mod properties;
#[path = "session.rs"]
mod session;
#[path = "streaming.rs"]
mod streaming;

use processing::{FrameInfo, Proc, QEvent};
use properties::{LiveTunables, Settings};
use streaming::Stream;

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

type Queue = FrameQueue<Proc, QEvent>;

/// The running session, from READY -> PAUSED to PAUSED -> READY.
struct State {
    queue: Arc<Queue>,
    spec: ModelSpec,
    info: Option<Arc<FrameInfo>>,
    stats: Arc<Stats>,
    /// Downstream flow and QoS, shared by chain, events, queries and the src task.
    stream: Stream,
    /// The id of a shared engine this element joined while another element was still
    /// building its session: its Progress Complete (or Error) is still to be posted.
    joined: Option<String>,
}

/// No lock is held across a blocking call (a push, a peer query, a channel receive, a
/// join); where two are held, `state` comes before `report`.
pub struct DenoiseSeg {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    /// The `mask` pad while it is requested.
    mask_pad: Mutex<Option<gst::Pad>>,
    /// The properties that change only in NULL or READY.
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The engine's tunables, shared with the queue: where `leaky` and `batch-timeout`
    /// live (see [`Settings`] for what lives where).
    tunables: Arc<Tunables>,
    /// Shared with the post-processing workers: where `noise-level`, `output` and
    /// `overlay-alpha` live.
    live: Arc<LiveTunables>,
    /// Shared with the session build on the queue's inference thread.
    report: Arc<Mutex<Report>>,
    mask_seqnum: AtomicU64,
    /// The class map's stabilization (`class-confirm-frames`): used by the src pad task
    /// only, made with the first frame after each start.
    stabilizer: Mutex<Option<ClassStabilizer>>,
}

/// What the element reports of its sessions.
#[derive(Default)]
struct Report {
    /// The provider in use ("" until the session is built).
    provider: String,
    /// The statistics as last read; they stay readable after the session stops.
    last_stats: queue::StatsSnapshot,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl DenoiseSeg {
    fn state_snapshot(&self) -> Option<(Arc<Queue>, Option<Arc<FrameInfo>>)> {
        lock(&self.state).as_ref().map(|s| (s.queue.clone(), s.info.clone()))
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
        DenoiseSeg {
            sinkpad,
            srcpad,
            mask_pad: Mutex::new(None),
            tunables: Arc::new(properties::default_tunables()),
            live: Arc::new(LiveTunables::default()),
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(None),
            report: Arc::new(Mutex::new(Report::default())),
            mask_seqnum: AtomicU64::new(0),
            stabilizer: Mutex::new(None),
        }
    }
}

impl ObjectImpl for DenoiseSeg {
    fn properties() -> &'static [glib::ParamSpec] {
        properties::param_specs()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        self.set_prop(value, pspec)
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        self.prop(pspec)
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
        name: Option<&str>,
        caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        self.request_mask_pad(templ, name, caps)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        self.release_mask_pad(pad)
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
