//! The `addnoise` element: seeded, reproducible synthetic noise on raw video.
use gst::glib;
use gst::prelude::*;

mod imp;

/// The noise model of `addnoise`'s `mode` property.
#[derive(Debug, Default, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstAddNoiseMode")]
pub enum AddNoiseMode {
    /// Additive white Gaussian noise of standard deviation `sigma`.
    #[default]
    #[enum_value(
        name = "Gaussian: additive white noise of standard deviation sigma",
        nick = "gaussian"
    )]
    Gaussian = 0,
    /// Photon shot noise scaled by `gain` plus Gaussian read noise `sigma`.
    #[enum_value(
        name = "Poisson-Gaussian: signal-dependent shot noise (gain) plus read noise (sigma)",
        nick = "poisson-gaussian"
    )]
    PoissonGaussian = 1,
}

glib::wrapper! {
    pub struct AddNoise(ObjectSubclass<imp::AddNoise>)
        @extends gst_video::VideoFilter, gst_base::BaseTransform, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    AddNoiseMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(Some(plugin), "addnoise", gst::Rank::NONE, AddNoise::static_type())
}
