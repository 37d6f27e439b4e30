//! The `denoiseseg` element's options, shared by run, demo, eval and bench, and
//! setting its properties from text with checks.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use gst::glib;
use gst::prelude::*;

use super::setup::resolve_model;

/// The `denoiseseg` element's options, shared by run, demo, eval and bench.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ElementOpts {
    /// ONNX model with its .toml sidecar beside it [default: the shipped denoiseseg-sdb-small.onnx]
    #[arg(long, value_name = "FILE.onnx")]
    pub model: Option<PathBuf>,
    /// Property preset (TOML, see configs/), applied before the other options
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Execution provider: auto, tensorrt, cuda or cpu
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// CUDA device index for tensorrt and cuda
    #[arg(long, value_name = "N")]
    pub device_id: Option<u32>,
    /// TensorRT half precision (true/false)
    #[arg(long, value_name = "BOOL")]
    pub fp16: Option<bool>,
    /// Folder for TensorRT engine and timing caches
    #[arg(long, value_name = "DIR")]
    pub engine_cache_dir: Option<PathBuf>,
    /// Path of libonnxruntime.so.1
    #[arg(long, value_name = "FILE")]
    pub ort_library: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (0 = one per core)
    #[arg(long, value_name = "N")]
    pub inference_threads: Option<u32>,
    /// Frames per inference call (1-64)
    #[arg(long, value_name = "N")]
    pub batch_size: Option<u32>,
    /// Model runs in flight at once, each on its own ONNX Runtime session (1-8)
    #[arg(long, value_name = "N")]
    pub concurrent_runs: Option<u32>,
    /// Longest wait for a batch to fill, in milliseconds
    #[arg(long, value_name = "MS")]
    pub batch_timeout: Option<u32>,
    /// Most frames inside the element at once
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u32>,
    /// Pre- and post-processing threads, each
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Noise sigma in 8-bit units fed to the model; -1 estimates it per frame
    #[arg(long, value_name = "SIGMA", allow_negative_numbers = true)]
    pub noise_level: Option<f64>,
    /// Drop the oldest waiting frame instead of blocking the source; `run` sets it on
    /// live inputs (cameras, rtsp://, udp://, srt://, rtmp://) unless told otherwise
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub leaky: Option<bool>,
    /// Never drop frames, also on live inputs: queue them (same as --leaky=false)
    #[arg(long, conflicts_with = "leaky")]
    pub no_leaky: bool,
    /// Opacity of the class colours in overlay views (0-1)
    #[arg(long, value_name = "A")]
    pub overlay_alpha: Option<f64>,
    /// Any other element property, as NAME=VALUE (repeatable)
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

impl ElementOpts {
    /// The model these options run: `--model`, else the preset's `model`, else the
    /// shipped default.
    pub fn model_path(&self) -> Result<PathBuf> {
        if self.model.is_none() {
            if let Some(path) = &self.config {
                let preset = denoiseseg::config::load_properties(path)?;
                if let Some((_, model)) = preset.iter().rev().find(|(name, _)| name == "model") {
                    return resolve_model(Some(Path::new(model))).with_context(|| format!("config {}", path.display()));
                }
            }
        }
        resolve_model(self.model.as_deref())
    }

    /// The (property, value) pairs these options set, in the order they apply, after
    /// the preset's (see [`ElementOpts::apply`]).
    pub fn properties(&self) -> Result<Vec<(String, String)>> {
        let mut p: Vec<(String, String)> = Vec::new();
        let mut put = |k: &str, v: String| p.push((k.to_string(), v));
        put("model", self.model_path()?.display().to_string());
        if let Some(v) = &self.provider {
            put("execution-provider", v.clone());
        }
        if let Some(v) = self.device_id {
            put("device-id", v.to_string());
        }
        if let Some(v) = self.fp16 {
            put("fp16", v.to_string());
        }
        if let Some(v) = &self.engine_cache_dir {
            put("engine-cache-dir", v.display().to_string());
        }
        if let Some(v) = &self.ort_library {
            put("ort-library", v.display().to_string());
        }
        if let Some(v) = self.inference_threads {
            put("inference-threads", v.to_string());
        }
        if let Some(v) = self.batch_size {
            put("batch-size", v.to_string());
        }
        if let Some(v) = self.concurrent_runs {
            put("concurrent-runs", v.to_string());
        }
        if let Some(v) = self.batch_timeout {
            put("batch-timeout", v.to_string());
        }
        if let Some(v) = self.max_in_flight {
            put("max-in-flight", v.to_string());
        }
        if let Some(v) = self.workers {
            put("workers", v.to_string());
        }
        if let Some(v) = self.noise_level {
            put("noise-level", v.to_string());
        }
        if let Some(v) = self.leaky_choice() {
            put("leaky", v.to_string());
        }
        if let Some(v) = self.overlay_alpha {
            put("overlay-alpha", v.to_string());
        }
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--set {kv}: expected NAME=VALUE"))?;
            let k = k.trim();
            // The app reads the model's classes and applies the preset itself: these
            // two go through their own options.
            if let Some(option) = ["model", "config"].into_iter().find(|o| *o == k) {
                bail!("--set {kv}: give the {option} with --{option}");
            }
            put(k, v.trim().to_string());
        }
        Ok(p)
    }

    /// Whether the user chose leaky or not (--leaky[=BOOL], --no-leaky).
    /// Sets up `element` for an input: leaky on a live one (so that the model's pace
    /// never holds up the source), then the preset and the options. A file waits for
    /// the model and keeps every frame unless the command line asks for leaky (`--leaky`,
    /// `--set leaky=true`): a preset's `leaky = true` is for live inputs, and on a file
    /// it dropped most frames. Returns whether it turned a preset's leaky off.
    pub fn apply_for_input(&self, element: &gst::Element, live: bool) -> Result<bool> {
        if live {
            element.set_property("leaky", true);
        }
        self.apply(element)?;
        let asked = self.leaky_choice().is_some()
            || self
                .set
                .iter()
                .any(|s| s.split_once('=').is_some_and(|(k, _)| k.trim() == "leaky"));
        if !live && !asked && element.property::<bool>("leaky") {
            element.set_property("leaky", false);
            return Ok(true);
        }
        Ok(false)
    }

    pub fn leaky_choice(&self) -> Option<bool> {
        if self.no_leaky {
            Some(false)
        } else {
            self.leaky
        }
    }

    /// Applies the preset, then the options, to a `denoiseseg` element in the NULL
    /// state, and checks the settings that only fail together. A bad name, value or
    /// combination is a one-line error here, before any pipeline starts: the element
    /// would otherwise refuse to start (an error, the pipeline left half-started) or
    /// skip a preset entry with a warning.
    pub fn apply(&self, element: &gst::Element) -> Result<()> {
        if let Some(path) = &self.config {
            // The app applies the preset itself (as the element's `config` would) so
            // that a bad entry is an error that names the file.
            let preset = denoiseseg::config::load_properties(path)?;
            for (name, value) in preset {
                if name == "config" {
                    bail!("config {}: a preset cannot load another preset", path.display());
                }
                set_property_checked(element, &name, &value).with_context(|| format!("config {}", path.display()))?;
            }
        }
        for (name, value) in self.properties()? {
            set_property_checked(element, &name, &value)?;
        }
        let batch = element.property::<u32>("batch-size");
        let in_flight = element.property::<u32>("max-in-flight");
        if in_flight < batch {
            bail!(
                "max-in-flight {in_flight} is less than batch-size {batch}: a batch could never fill \
                 (give --max-in-flight {batch} or more, or a smaller --batch-size)"
            );
        }
        Ok(())
    }

    /// Checks the options on a scratch element (see [`ElementOpts::apply`]), for a
    /// command that wants them checked before it builds its pipeline, and returns it:
    /// its properties are the settings the options give.
    pub fn check(&self) -> Result<gst::Element> {
        let scratch = scratch_element()?;
        self.apply(&scratch)?;
        Ok(scratch)
    }
}

/// A `denoiseseg` element outside any pipeline, to check settings on.
pub fn scratch_element() -> Result<gst::Element> {
    gst::ElementFactory::make("denoiseseg")
        .build()
        .context("cannot create the denoiseseg element")
}

/// Sets a property from text after checking that it exists, is writable, parses and
/// lies in range (glib would panic on an out-of-range value).
pub fn set_property_checked(element: &gst::Element, name: &str, value: &str) -> Result<()> {
    let factory = element.factory().map(|f| f.name().to_string()).unwrap_or_default();
    let pspec = element
        .find_property(name)
        .ok_or_else(|| anyhow!("{factory} has no property '{name}' (see gst-inspect-1.0 {factory})"))?;
    if !pspec.flags().contains(glib::ParamFlags::WRITABLE) {
        bail!("property '{name}' of {factory} is read-only");
    }
    let v = glib::Value::deserialize(value, pspec.value_type())
        .map_err(|_| anyhow!("'{value}' is not a valid value for {name} ({})", pspec.value_type()))?;
    let range = if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt>() {
        let x = v.get::<u32>()?;
        (x < p.minimum() || x > p.maximum()).then(|| format!("{}..={}", p.minimum(), p.maximum()))
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecInt>() {
        let x = v.get::<i32>()?;
        (x < p.minimum() || x > p.maximum()).then(|| format!("{}..={}", p.minimum(), p.maximum()))
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt64>() {
        let x = v.get::<u64>()?;
        (x < p.minimum() || x > p.maximum()).then(|| format!("{}..={}", p.minimum(), p.maximum()))
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecDouble>() {
        let x = v.get::<f64>()?;
        (!(p.minimum()..=p.maximum()).contains(&x)).then(|| format!("{}..={}", p.minimum(), p.maximum()))
    } else {
        None
    };
    if let Some(range) = range {
        bail!("{name} = {value} is out of range {range}");
    }
    element.set_property_from_value(name, &v);
    Ok(())
}
