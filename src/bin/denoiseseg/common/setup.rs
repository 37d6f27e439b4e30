//! Getting started: GStreamer with the `denoiseseg` plugin loaded, the shipped models
//! and sample clip, and errors printed as one line (with the detail `-v` adds).
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The shipped sample clip, relative to the models folder.
pub const SAMPLE_CLIP: &str = "sample/street.mp4";
/// Its label maps (GRAY8 train ids, FFV1), relative to the models folder.
pub const SAMPLE_LABELS: &str = "sample/street-labels.mkv";

/// Detail that only `-v` shows: GStreamer's debug text of an error and the element it
/// came from. It sits at the end of an error's chain of causes.
#[derive(Debug)]
pub struct Detail(pub String);

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Detail {}

/// An error as one line: the message and each of its causes (anyhow's context chain),
/// joined by ": ", each on one line, without the [`Detail`] that `-v` adds; a cause
/// whose text the line already holds is not repeated.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().filter(|c| !c.is::<Detail>()) {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The [`Detail`] of an error, if it carries one, for `-v`.
pub fn error_detail(e: &anyhow::Error) -> Option<String> {
    e.chain().find(|c| c.is::<Detail>()).map(ToString::to_string)
}

/// The folder of the running executable.
fn exe_dir() -> Option<PathBuf> {
    std::env::current_exe().ok()?.parent().map(Path::to_path_buf)
}

/// Initializes GStreamer and makes sure the `denoiseseg` plugin is loaded: the one
/// beside the executable first (both land in target/<profile>/), then whatever
/// GST_PLUGIN_PATH and the system registry give.
pub fn init_gstreamer() -> Result<()> {
    gst::init().context("cannot initialize GStreamer")?;
    if let Some(dir) = exe_dir() {
        let so = dir.join("libgstdenoiseseg.so");
        if so.is_file() && gst::ElementFactory::find("denoiseseg").is_none() {
            gst::Plugin::load_file(&so).with_context(|| format!("cannot load the plugin {}", so.display()))?;
        }
    }
    if gst::ElementFactory::find("denoiseseg").is_none() {
        bail!(
            "the denoiseseg GStreamer plugin was found neither beside this program nor in GST_PLUGIN_PATH; \
             run `make build` (it lands in target/release/libgstdenoiseseg.so)"
        );
    }
    Ok(())
}

/// The folder with the shipped models: $DENOISESEG_MODEL_DIR, the source tree's models/
/// seen from target/<profile>/, or the source tree the app was built from (the
/// engine's `model::models_dir`, seen from this program's folder).
pub fn models_dir() -> PathBuf {
    denoiseseg::model::models_dir(exe_dir().as_deref())
}

/// A model path given by the user, or the shipped default.
pub fn resolve_model(model: Option<&Path>) -> Result<PathBuf> {
    let path = match model {
        Some(p) => p.to_path_buf(),
        None => denoiseseg::model::default_model_path(exe_dir().as_deref()),
    };
    if !path.is_file() {
        bail!("no model at {}", path.display());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::anyhow;

    #[test]
    fn errors_print_their_causes_on_one_line_and_keep_the_detail_for_v() {
        let e = anyhow::Error::new(Detail("gst.c(12): f ()\n(from /pipeline0/d)".into()))
            .context("no such\nprovider")
            .context("cannot start");
        assert_eq!(error_line(&e), "cannot start: no such provider");
        assert_eq!(
            error_detail(&e).as_deref(),
            Some("gst.c(12): f ()\n(from /pipeline0/d)")
        );
        // A cause already quoted by its context is not repeated.
        let e = anyhow!("disk full").context("cannot write x: disk full");
        assert_eq!(error_line(&e), "cannot write x: disk full");
        assert!(error_detail(&e).is_none());
    }
}
