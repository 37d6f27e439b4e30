//! The bare ONNX Runtime loop's side: the settings read back from the element, so that
//! both parts run exactly the same, and the loop's session.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use gst::glib;
use gst::prelude::*;

use denoiseseg::model::ModelSpec;
use denoiseseg::runtime::{self, OrtBackend, Provider, SessionOptions};

/// What the element was set to, read back after the options were applied, so that the
/// bare loop uses exactly the same settings (presets included).
pub struct Settings {
    pub model: PathBuf,
    pub provider: Provider,
    pub device_id: u32,
    pub fp16: bool,
    pub engine_cache_dir: Option<PathBuf>,
    pub ort_library: Option<PathBuf>,
    pub threads: u32,
    /// The element's batch-size (the preset's or the default when no --batch-size).
    pub batch: usize,
    pub noise_level: f64,
}

fn string_property(e: &gst::Element, name: &str) -> String {
    e.property::<Option<String>>(name).unwrap_or_default()
}

pub fn settings_of(ds: &gst::Element) -> Result<Settings> {
    let v = ds.property_value("execution-provider");
    let nick = glib::EnumValue::from_value(&v)
        .map(|(_, ev)| ev.nick().to_string())
        .ok_or_else(|| anyhow!("cannot read execution-provider"))?;
    let provider: Provider = nick.parse().map_err(|e| anyhow!("{e}"))?;
    let path = |s: String| (!s.is_empty()).then(|| PathBuf::from(s));
    Ok(Settings {
        model: path(string_property(ds, "model")).ok_or_else(|| anyhow!("no model set"))?,
        provider,
        device_id: ds.property::<u32>("device-id"),
        fp16: ds.property::<bool>("fp16"),
        engine_cache_dir: path(string_property(ds, "engine-cache-dir")),
        ort_library: path(string_property(ds, "ort-library")),
        threads: ds.property::<u32>("inference-threads"),
        batch: ds.property::<u32>("batch-size") as usize,
        noise_level: ds.property::<f64>("noise-level"),
    })
}

/// The bare loop's session, loaded once.
pub struct Bare {
    pub backend: OrtBackend,
    pub provider: Provider,
    /// How long the session took to build (with TensorRT: the engine build, or loading
    /// it from `engine-cache-dir`).
    pub build: Duration,
}

/// Builds the bare loop's session for batches of `batch` (with TensorRT the optimization
/// profile is the element's at that batch size).
pub fn load(s: &Settings, spec: &ModelSpec, padded: (usize, usize), batch: usize, verbose: u8) -> Result<Bare> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let (env, _) = runtime::environment(&runtime::library_candidates(
        s.ort_library.as_deref(),
        beside.as_deref(),
    ))?;
    let opts = SessionOptions {
        provider: s.provider,
        device_id: s.device_id,
        fp16: s.fp16,
        engine_cache_dir: s.engine_cache_dir.clone(),
        intra_threads: s.threads as usize,
        batch_size: batch,
        profile_size: Some(padded),
    };
    let started = Instant::now();
    let model = runtime::load_model(&env, spec, &opts).context("cannot start the bare ONNX Runtime loop")?;
    let build = started.elapsed();
    if verbose > 0 {
        for w in &model.warnings {
            eprintln!("bare loop: {w}");
        }
    }
    let backend = OrtBackend::new(model);
    Ok(Bare {
        provider: backend.provider(),
        backend,
        build,
    })
}
