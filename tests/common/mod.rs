//! Helpers shared by the app's end-to-end tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_denoiseseg");

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A model from tests/models.
pub fn test_model(name: &str) -> String {
    root().join("tests/models").join(name).display().to_string()
}

/// An empty folder `name` in the temporary folder (emptied if it was there).
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The app, after checking that the plugin lies beside it (the app loads it from there).
pub fn app() -> Command {
    let plugin = Path::new(BIN)
        .parent()
        .expect("the binary has a folder")
        .join("libgstdenoiseseg.so");
    assert!(
        plugin.is_file(),
        "{} is missing: run `cargo build --release --workspace` (or `make build`) before \
         `cargo test --release`",
        plugin.display()
    );
    let mut c = Command::new(BIN);
    c.env_remove("DENOISESEG_MODEL_DIR");
    c
}

/// Runs a gst-launch-1.0 pipeline (split on whitespace) and asserts it succeeds.
pub fn gst_launch(desc: &str) {
    let args: Vec<&str> = desc.split_whitespace().collect();
    let out = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .output()
        .expect("gst-launch-1.0 runs");
    assert!(
        out.status.success(),
        "gst-launch-1.0 {desc} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
