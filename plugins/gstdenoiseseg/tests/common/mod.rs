//! Set-up shared by the plugin's test files.
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::sync::Once;

/// Initializes GStreamer and registers the plugin statically, once per test binary.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst::init");
        gstdenoiseseg::plugin_register_static().expect("register plugin");
    });
}

/// A test model from tests/models at the top of the project.
pub fn model(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/models")
        .join(name)
        .display()
        .to_string()
}
