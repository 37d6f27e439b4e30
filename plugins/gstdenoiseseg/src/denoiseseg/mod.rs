//! The `denoiseseg` element: joint denoising and semantic segmentation of raw video on
//! ONNX Runtime, through a multi-threaded frame queue. See `imp.rs` for the details.
use gst::glib;
use gst::prelude::*;

mod imp;

/// Name of the custom meta that carries the class map on every `src` buffer. Its
/// structure holds `mask` (a GRAY8 `GstBuffer` of class ids), `width`, `height`,
/// `stride` (bytes per mask row), `classes` (number of classes) and `palette` (a
/// `GBytes` of 3 × `classes` bytes: the RGB colour of each class id). One per buffer:
/// a segmenting element replaces an upstream element's, a denoise-only one keeps it.
pub const MASK_META: &str = "DenoisesegMaskMeta";

glib::wrapper! {
    pub struct DenoiseSeg(ObjectSubclass<imp::DenoiseSeg>) @extends gst::Element, gst::Object;
}

/// Execution provider choice (`execution-provider`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstDenoiseSegProvider")]
pub enum ProviderChoice {
    #[default]
    #[enum_value(name = "TensorRT, then CUDA, then CPU (warns which one runs)", nick = "auto")]
    Auto = 0,
    #[enum_value(name = "TensorRT (error if unavailable)", nick = "tensorrt")]
    TensorRt = 1,
    #[enum_value(name = "CUDA (error if unavailable)", nick = "cuda")]
    Cuda = 2,
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu = 3,
}

/// What the `src` pad carries (`output`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstDenoiseSegOutput")]
pub enum OutputMode {
    #[default]
    #[enum_value(
        name = "The denoised frame (the input frame for segmentation-only models)",
        nick = "denoised"
    )]
    Denoised = 0,
    #[enum_value(name = "The class map's colours blended over the denoised frame", nick = "overlay")]
    Overlay = 1,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    if !gst::meta::CustomMeta::is_registered(MASK_META) {
        gst::meta::CustomMeta::register(MASK_META, &["video"]);
    }
    gst::Element::register(Some(plugin), "denoiseseg", gst::Rank::NONE, DenoiseSeg::static_type())
}
