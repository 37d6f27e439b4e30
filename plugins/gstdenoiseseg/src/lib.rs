//! GStreamer plugin `denoiseseg`: the elements `denoiseseg` (joint denoising and
//! semantic segmentation on ONNX Runtime), `segoverlay` (draws the class map that
//! `denoiseseg` attaches to each buffer, on any branch) and `addnoise` (seeded
//! synthetic noise).
use gst::glib;

mod addnoise;
mod denoiseseg;
mod segoverlay;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    denoiseseg::register(plugin)?;
    segoverlay::register(plugin)?;
    addnoise::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    denoiseseg,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
