//! The `segoverlay` element: draws the class map that `denoiseseg` attaches to each
//! buffer (`DenoisesegMaskMeta`) over the video, on any branch after a tee, without
//! running the model again. See `imp.rs` for the details.
use gst::glib;
use gst::prelude::*;

use crate::denoiseseg::MASK_META;

mod imp;

glib::wrapper! {
    pub struct SegOverlay(ObjectSubclass<imp::SegOverlay>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Registered by denoiseseg too; whichever comes first registers it.
    if !gst::meta::CustomMeta::is_registered(MASK_META) {
        gst::meta::CustomMeta::register(MASK_META, &["video"]);
    }
    gst::Element::register(Some(plugin), "segoverlay", gst::Rank::NONE, SegOverlay::static_type())
}
