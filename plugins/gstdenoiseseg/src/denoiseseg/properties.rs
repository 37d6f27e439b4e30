//! Properties: the settings, their defaults and param specs, set/get, and config presets.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::*;
use super::{OutputMode, ProviderChoice};

// The model used when `model` is empty (the engine's `model::default_model_path`):
// looked for in `$DENOISESEG_MODEL_DIR`, then in `models/` two folders above the
// plugin (a build in `target/<profile>/` of the source tree), then in the source tree
// the plugin was built from.
use denoiseseg::model::DEFAULT_MODEL_FILE;

pub(super) fn default_cache_dir() -> String {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("denoiseseg").join("tensorrt").display().to_string()
}

const DEFAULT_BATCH_SIZE: u32 = 1;
const DEFAULT_CONCURRENT_RUNS: u32 = 1;
const DEFAULT_BATCH_TIMEOUT_MS: u32 = 0;
/// `max-in-flight` unless set: at least this, or room for two rounds of batches (see
/// [`Settings::max_in_flight`]).
const DEFAULT_MAX_IN_FLIGHT: u32 = 8;
const DEFAULT_WORKERS: u32 = 2;
const DEFAULT_LEAKY: bool = false;
const DEFAULT_NOISE_LEVEL: f64 = -1.0;
const DEFAULT_OUTPUT: OutputMode = OutputMode::Denoised;
const DEFAULT_OVERLAY_ALPHA: f64 = 0.5;
/// `class-confirm-frames`: a one-frame flip of a background class never shows.
const DEFAULT_CLASS_CONFIRM: u32 = 2;

/// The properties that can only change in NULL or READY, read by `start`. Those that
/// change in PLAYING are not here: each lives in one atomic shared with the streaming
/// threads (`batch-timeout` and `leaky` in the engine's [`Tunables`]; `noise-level`,
/// `output`, `overlay-alpha` and `class-confirm-frames` in [`LiveTunables`]), which is
/// where `property` reads it.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) model: String,
    pub(super) config: String,
    pub(super) provider: ProviderChoice,
    pub(super) device_id: u32,
    pub(super) fp16: bool,
    pub(super) engine_cache_dir: String,
    pub(super) ort_library: String,
    pub(super) inference_threads: u32,
    pub(super) batch_size: u32,
    pub(super) concurrent_runs: u32,
    /// `max-in-flight` as set; `None` until it is: it then follows batch-size (see
    /// [`Settings::max_in_flight`]).
    pub(super) max_in_flight_set: Option<u32>,
    pub(super) workers: u32,
    /// Empty: a private engine; else the id of the engine shared in the process.
    pub(super) model_instance_id: String,
    /// What was wrong with `config` when it was set: the next start fails with it (a
    /// property set before the element is in a pipeline has no bus to report on).
    pub(super) config_error: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            model: String::new(),
            config: String::new(),
            provider: ProviderChoice::Auto,
            device_id: 0,
            fp16: true,
            engine_cache_dir: default_cache_dir(),
            ort_library: String::new(),
            inference_threads: 0,
            batch_size: DEFAULT_BATCH_SIZE,
            concurrent_runs: DEFAULT_CONCURRENT_RUNS,
            max_in_flight_set: None,
            workers: DEFAULT_WORKERS,
            model_instance_id: String::new(),
            config_error: None,
        }
    }
}

impl Settings {
    /// `max-in-flight`: as set, or else max(8, 2 x batch-size x concurrent-runs), so
    /// that the next batch of every run can be pre-processed while the current ones
    /// run (with only batch-size x concurrent-runs frames, a run's next batch cannot
    /// start filling until it ends and its frames are pushed).
    pub(super) fn max_in_flight(&self) -> u32 {
        self.max_in_flight_set.unwrap_or_else(|| {
            DEFAULT_MAX_IN_FLIGHT
                .max(2 * self.batch_size * self.concurrent_runs)
                .min(1024)
        })
    }
}

/// The engine's tunables (`leaky`, `batch-timeout`, and `noise-level` on the engine's
/// 0..1 scale) at their defaults.
pub(super) fn default_tunables() -> Tunables {
    Tunables::new(
        DEFAULT_LEAKY,
        sigma_01(DEFAULT_NOISE_LEVEL),
        Duration::from_millis(DEFAULT_BATCH_TIMEOUT_MS as u64),
    )
}

/// The element's own tunables that change in PLAYING, in property units: the one
/// source of `noise-level`, `output`, `overlay-alpha` and `class-confirm-frames` (the
/// post-processing workers read `overlay`, `alpha` and `class_confirm` per frame, the
/// src pad task `class_confirm` too). The engine's copy of the noise level, on its 0..1
/// scale, is written from here only, by `set_property`.
#[derive(Debug)]
pub(super) struct LiveTunables {
    /// `output=overlay`.
    pub(super) overlay: AtomicBool,
    /// `overlay-alpha`, f64 bits.
    pub(super) alpha: AtomicU64,
    /// `noise-level`, f64 bits.
    pub(super) noise_level: AtomicU64,
    /// `class-confirm-frames`.
    pub(super) class_confirm: AtomicU32,
}

impl LiveTunables {
    pub(super) fn output(&self) -> OutputMode {
        if self.overlay.load(Ordering::Relaxed) {
            OutputMode::Overlay
        } else {
            OutputMode::Denoised
        }
    }
}

impl Default for LiveTunables {
    fn default() -> Self {
        LiveTunables {
            overlay: AtomicBool::new(DEFAULT_OUTPUT == OutputMode::Overlay),
            alpha: AtomicU64::new(DEFAULT_OVERLAY_ALPHA.to_bits()),
            noise_level: AtomicU64::new(DEFAULT_NOISE_LEVEL.to_bits()),
            class_confirm: AtomicU32::new(DEFAULT_CLASS_CONFIRM),
        }
    }
}

pub(super) fn param_specs() -> &'static [glib::ParamSpec] {
    static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        let d = Settings::default();
        vec![
            glib::ParamSpecString::builder("model")
                .nick("Model")
                .blurb(&format!(
                    "Path of the ONNX model; its TOML sidecar (same name, .toml) must lie beside it and \
                     says how frames are fed ([preprocess]: channel order, layout, normalisation, resize for \
                     fixed-size graphs; `denoiseseg models FILE` suggests one). Empty: the shipped default {DEFAULT_MODEL_FILE} from $DENOISESEG_MODEL_DIR, else the models/ folder of the source tree the plugin was built in. NULL/READY only"
                ))
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("model-instance-id")
                .nick("Model instance id")
                .blurb("Empty: this element runs its own ONNX Runtime session and inference thread. Else: \
                        every denoiseseg in the process with the same id shares one session and one inference \
                        thread, whose batches (up to batch-size, waiting at most the smallest batch-timeout \
                        among them) hold frames from all their streams; frame order, flushes, EOS, leaky drops, \
                        latency and noise-level stay per element. They must have the same model, \
                        execution-provider, device-id, fp16 and batch-size, or the later ones fail to start \
                        with an error naming the id; the other session settings (engine-cache-dir, \
                        inference-threads) are the first element's. NULL/READY only")
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("config")
                .nick("Config preset")
                .blurb("Path of a TOML preset whose [denoiseseg] table sets properties by name (see configs/); applied when \
                        set. A preset that cannot be read, or an entry that cannot be set, fails the next start \
                        with an error naming the file and the entry. NULL/READY only")
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder_with_default("execution-provider", d.provider)
                .nick("Execution provider")
                .blurb("ONNX Runtime execution provider: auto tries TensorRT, CUDA, then CPU and warns which runs; \
                        an explicit choice that cannot be had is an error. NULL/READY only")
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("device-id")
                .nick("GPU device")
                .blurb("CUDA device index for the TensorRT and CUDA providers (0-15). NULL/READY only")
                .maximum(15)
                .default_value(d.device_id)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("fp16")
                .nick("FP16")
                .blurb("TensorRT: allow half-precision kernels (faster, tiny accuracy change). NULL/READY only")
                .default_value(d.fp16)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("engine-cache-dir")
                .nick("TensorRT cache folder")
                .blurb("Folder for TensorRT engine and timing caches, so later starts skip the engine build; \
                        empty disables caching. NULL/READY only")
                .default_value(Some(d.engine_cache_dir.as_str()))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("ort-library")
                .nick("ONNX Runtime library")
                .blurb("Path of libonnxruntime.so.1 (1.31). Empty: $ORT_DYLIB_PATH, then beside the plugin, \
                        then the system's. Only the first library loaded in a process counts. NULL/READY only")
                .default_value(Some(""))
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("inference-threads")
                .nick("Inference threads")
                .blurb("ONNX Runtime intra-op threads for CPU inference (0 = one per core, 1-256). NULL/READY only")
                .maximum(256)
                .default_value(d.inference_threads)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("batch-size")
                .nick("Batch size")
                .blurb("Frames per inference call (1-64); larger batches raise GPU throughput and latency. NULL/READY only")
                .minimum(1)
                .maximum(64)
                .default_value(d.batch_size)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("concurrent-runs")
                .nick("Concurrent model runs")
                .blurb("Model runs in flight at once (1-8), each on its own ONNX Runtime session: copies and \
                        pre/post-processing overlap with the device's work (GPU throughput), at the memory of \
                        one more session each; frames still come out in order. max-in-flight, unless set, gives \
                        room for twice concurrent-runs x batch-size frames. Elements sharing a model-instance-id must agree. \
                        NULL/READY only")
                .minimum(1)
                .maximum(denoiseseg::queue::MAX_CONCURRENT_RUNS as u32)
                .default_value(d.concurrent_runs)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("batch-timeout")
                .nick("Batch timeout (ms)")
                .blurb("Longest wait in milliseconds for a batch to fill before running it anyway (0-10000); \
                        adds up to this much latency")
                .maximum(10_000)
                .default_value(DEFAULT_BATCH_TIMEOUT_MS)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("max-in-flight")
                .nick("Frames in flight")
                .blurb("Most frames inside the element at once (1-1024, at least batch-size); bounds memory \
                        and the latency reported. Until set it follows batch-size: max(8, 2 x batch-size x \
                        concurrent-runs), room to pre-process the next batches while the current ones run \
                        (reads back the value in use). NULL/READY only")
                .minimum(1)
                .maximum(1024)
                .default_value(d.max_in_flight())
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("workers")
                .nick("Workers")
                .blurb("Pre-processing and post-processing threads, each (1-64). NULL/READY only")
                .minimum(1)
                .maximum(64)
                .default_value(d.workers)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("leaky")
                .nick("Leaky")
                .blurb("When full, drop the oldest waiting frame (counted, posted as QoS) instead of blocking \
                        upstream; for live sources")
                .default_value(DEFAULT_LEAKY)
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("noise-level")
                .nick("Noise level")
                .blurb("Noise sigma in 8-bit units (0-255) for models with a sigma input; -1 (or any negative \
                        value) estimates it per frame from the image, smoothed over time and holding the level \
                        recent frames showed (compressed video shows a camera's noise on its keyframes and hides \
                        most of it between them; the held level decays by half in about 140 frames)")
                .minimum(-1.0)
                .maximum(255.0)
                .default_value(DEFAULT_NOISE_LEVEL)
                .mutable_playing()
                .build(),
            glib::ParamSpecEnum::builder_with_default("output", DEFAULT_OUTPUT)
                .nick("Output")
                .blurb("What the src pad carries: the denoised frame, or the class colours blended over it")
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("overlay-alpha")
                .nick("Overlay opacity")
                .blurb("Opacity of the class colours with output=overlay (0 = invisible, 1 = opaque)")
                .minimum(0.0)
                .maximum(1.0)
                .default_value(DEFAULT_OVERLAY_ALPHA)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("class-confirm-frames")
                .nick("Class confirmation frames")
                .blurb(
                    "Stabilizes the class map over time: a pixel shows a new background class (road, building, \
                     sky, ...) only once the model has given it this many frames in a row, so a one-frame flip \
                     never shows and a static camera's map does not flicker; object classes (person, rider and \
                     the vehicles, or the sidecar's `object` classes) change at once. 1 = off: each frame's map \
                     as the model gives it. A real change of background class shows this many frames minus \
                     one late. Restarts after a seek, a discontinuity or new caps",
                )
                .minimum(1)
                .maximum(ClassStabilizer::MAX_CONFIRM)
                .default_value(DEFAULT_CLASS_CONFIRM)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt64::builder("frames-processed")
                .nick("Frames processed")
                .blurb("Frames that came out since start (read-only)")
                .read_only()
                .build(),
            glib::ParamSpecUInt64::builder("frames-dropped")
                .nick("Frames dropped")
                .blurb("Frames dropped by leaky or QoS since start (read-only)")
                .read_only()
                .build(),
            glib::ParamSpecDouble::builder("mean-latency")
                .nick("Mean latency (ms)")
                .blurb("Mean time in milliseconds from a frame's arrival to its push (read-only)")
                .minimum(0.0)
                .read_only()
                .build(),
            glib::ParamSpecDouble::builder("max-latency")
                .nick("Max latency (ms)")
                .blurb("Longest time in milliseconds from a frame's arrival to its push (read-only)")
                .minimum(0.0)
                .read_only()
                .build(),
            glib::ParamSpecDouble::builder("noise-estimate")
                .nick("Noise sigma in use")
                .blurb("The noise sigma (8-bit units) fed to the model for the last frame (read-only)")
                .minimum(0.0)
                .read_only()
                .build(),
            glib::ParamSpecString::builder("provider")
                .nick("Provider in use")
                .blurb("The execution provider the session runs on; empty until the model is loaded (read-only)")
                .read_only()
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                .nick("Statistics")
                .blurb("All statistics in one structure: processed, dropped, batches, inferred (frames \
                        the model ran, counted before post-processing), mean-latency-ms, \
                        max-latency-ms, mean-batch-ms (one model run), busy (share of time the model \
                        ran since its first batch: 1 = the device never waited for input), sigma, \
                        mean-batch-frames (frames per model run, from all streams of the engine), \
                        engine-streams (elements on the engine: 1 unless model-instance-id shares it), \
                        concurrent-runs (model runs in flight at once), build-ms (time to build the \
                        sessions), engine-cache (TensorRT engine cache: hit, miss or off), provider \
                        (read-only)")
                .read_only()
                .build(),
        ]
    });
    PROPERTIES.as_ref()
}

impl DenoiseSeg {
    pub(super) fn set_prop(&self, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        if !self.mutable_now(pspec) {
            return;
        }
        if self.set_tunable(name, value) {
            return;
        }
        let mut s = lock(&self.settings);
        match name {
            "model" => s.model = value.get::<Option<String>>().expect("type checked").unwrap_or_default(),
            "config" => {
                let path = value.get::<Option<String>>().expect("type checked").unwrap_or_default();
                s.config = path.clone();
                drop(s);
                self.apply_config(&path);
            }
            "execution-provider" => s.provider = value.get().expect("type checked"),
            "device-id" => s.device_id = value.get().expect("type checked"),
            "fp16" => s.fp16 = value.get().expect("type checked"),
            "engine-cache-dir" => {
                s.engine_cache_dir = value.get::<Option<String>>().expect("type checked").unwrap_or_default()
            }
            "ort-library" => s.ort_library = value.get::<Option<String>>().expect("type checked").unwrap_or_default(),
            "inference-threads" => s.inference_threads = value.get().expect("type checked"),
            "batch-size" => s.batch_size = value.get().expect("type checked"),
            "concurrent-runs" => s.concurrent_runs = value.get().expect("type checked"),
            "max-in-flight" => s.max_in_flight_set = Some(value.get().expect("type checked")),
            "workers" => s.workers = value.get().expect("type checked"),
            "model-instance-id" => {
                s.model_instance_id = value.get::<Option<String>>().expect("type checked").unwrap_or_default()
            }
            other => gst::warning!(CAT, imp = self, "property '{other}' is read-only"),
        }
    }

    /// Sets a tunable that changes in PLAYING in its atomic, its one place; false for
    /// any other property.
    fn set_tunable(&self, name: &str, value: &glib::Value) -> bool {
        match name {
            "batch-timeout" => {
                let ms: u32 = value.get().expect("type checked");
                self.tunables.set_batch_timeout(Duration::from_millis(ms as u64));
                true
            }
            "leaky" => {
                self.tunables.set_leaky(value.get().expect("type checked"));
                true
            }
            "noise-level" => {
                let level: f64 = value.get().expect("type checked");
                // Under the settings lock, so that two writers cannot leave the
                // property and the engine's copy disagreeing.
                let _writers = lock(&self.settings);
                self.live.noise_level.store(level.to_bits(), Ordering::Relaxed);
                self.tunables.set_noise_level(sigma_01(level));
                true
            }
            "output" => {
                let output: OutputMode = value.get().expect("type checked");
                self.live
                    .overlay
                    .store(output == OutputMode::Overlay, Ordering::Relaxed);
                true
            }
            "overlay-alpha" => {
                let alpha: f64 = value.get().expect("type checked");
                self.live.alpha.store(alpha.to_bits(), Ordering::Relaxed);
                true
            }
            "class-confirm-frames" => {
                let frames: u32 = value.get().expect("type checked");
                self.live.class_confirm.store(frames, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    pub(super) fn prop(&self, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings).clone();
        match pspec.name() {
            "model" => s.model.to_value(),
            "config" => s.config.to_value(),
            "execution-provider" => s.provider.to_value(),
            "device-id" => s.device_id.to_value(),
            "fp16" => s.fp16.to_value(),
            "engine-cache-dir" => s.engine_cache_dir.to_value(),
            "ort-library" => s.ort_library.to_value(),
            "inference-threads" => s.inference_threads.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "concurrent-runs" => s.concurrent_runs.to_value(),
            "batch-timeout" => (self.tunables.batch_timeout().as_millis() as u32).to_value(),
            "max-in-flight" => s.max_in_flight().to_value(),
            "workers" => s.workers.to_value(),
            "model-instance-id" => s.model_instance_id.to_value(),
            "leaky" => self.tunables.leaky().to_value(),
            "noise-level" => f64::from_bits(self.live.noise_level.load(Ordering::Relaxed)).to_value(),
            "output" => self.live.output().to_value(),
            "overlay-alpha" => f64::from_bits(self.live.alpha.load(Ordering::Relaxed)).to_value(),
            "class-confirm-frames" => self.live.class_confirm.load(Ordering::Relaxed).to_value(),
            "frames-processed" => self.stats_snapshot().processed.to_value(),
            "frames-dropped" => self.stats_snapshot().dropped.to_value(),
            "mean-latency" => (self.stats_snapshot().mean_latency.as_secs_f64() * 1000.0).to_value(),
            "max-latency" => (self.stats_snapshot().max_latency.as_secs_f64() * 1000.0).to_value(),
            "noise-estimate" => (self.stats_snapshot().sigma as f64).to_value(),
            "provider" => self.provider().to_value(),
            "stats" => {
                let st = self.stats_snapshot();
                gst::Structure::builder("denoiseseg-stats")
                    .field("processed", st.processed)
                    .field("dropped", st.dropped)
                    .field("batches", st.batches)
                    .field("inferred", st.inferred)
                    .field("mean-latency-ms", st.mean_latency.as_secs_f64() * 1000.0)
                    .field("max-latency-ms", st.max_latency.as_secs_f64() * 1000.0)
                    .field("mean-batch-ms", st.mean_batch.as_secs_f64() * 1000.0)
                    .field("busy", st.busy)
                    .field("mean-batch-frames", st.mean_batch_frames)
                    .field("engine-streams", st.engine_streams)
                    .field("sigma", st.sigma as f64)
                    .field("concurrent-runs", st.concurrent_runs)
                    .field("build-ms", st.build_time.as_secs_f64() * 1000.0)
                    .field("engine-cache", st.engine_cache)
                    .field("provider", self.provider())
                    .build()
                    .to_value()
            }
            other => unreachable!("no property {other}"),
        }
    }

    /// The provider in use: the engine's (also when another element sharing it built
    /// the session), else the one last recorded.
    fn provider(&self) -> String {
        let running = lock(&self.state)
            .as_ref()
            .map(|s| s.stats.backend())
            .unwrap_or_default();
        if running.is_empty() {
            lock(&self.report).provider.clone()
        } else {
            running
        }
    }

    /// Whether `pspec` may be set in the current state, as its flags say: one built
    /// with `.mutable_playing()` in any state, any other (`.mutable_ready()`) only in
    /// NULL or READY; a change refused here is logged and ignored.
    fn mutable_now(&self, pspec: &glib::ParamSpec) -> bool {
        if pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_PLAYING) {
            return true;
        }
        let state = self.obj().current_state();
        if state > gst::State::Ready {
            // On the bus too (gst-launch prints it, an application sees it): the value
            // is kept as it was, which is easy to miss otherwise.
            let text = format!(
                "property '{}' can only be changed in NULL or READY state; it keeps its value",
                pspec.name()
            );
            gst::warning!(CAT, imp = self, "{text}");
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", text));
            return false;
        }
        true
    }

    /// Sets the properties a preset names. Every entry that can be set is set; what
    /// is wrong (the file, its TOML, an entry) is logged and kept for `start` to fail
    /// with, since a property set before the element is in a pipeline has no bus.
    pub(super) fn apply_config(&self, path: &str) {
        let problems = if path.is_empty() {
            Vec::new()
        } else {
            match denoiseseg::config::load_properties(Path::new(path)) {
                Ok(props) => props
                    .into_iter()
                    .filter_map(|(name, value)| self.apply_config_entry(&name, &value).err())
                    .collect(),
                Err(e) => vec![e.to_string()],
            }
        };
        for p in &problems {
            gst::warning!(CAT, imp = self, "config {path}: {p}");
        }
        lock(&self.settings).config_error = (!problems.is_empty()).then(|| problems.join("; "));
    }

    pub(super) fn apply_config_entry(&self, name: &str, value: &str) -> Result<(), String> {
        if name == "config" {
            return Err("a config cannot load another config".into());
        }
        let pspec = self
            .obj()
            .find_property(name)
            .ok_or_else(|| format!("no property '{name}'"))?;
        let v = checked_value(&pspec, value).map_err(|e| format!("{name} {e}"))?;
        self.obj().set_property_from_value(name, &v);
        Ok(())
    }
}

/// Parses a property value from text and checks that the property is writable and the
/// value in range (glib panics on a value it has to clamp).
pub(super) fn checked_value(pspec: &glib::ParamSpec, text: &str) -> Result<glib::Value, String> {
    if !pspec.flags().contains(glib::ParamFlags::WRITABLE) {
        return Err("is read-only".into());
    }
    let v = glib::Value::deserialize(text, pspec.value_type())
        .map_err(|_| format!("= '{text}' is not a valid {}", pspec.value_type()))?;
    fn range<T: PartialOrd + std::fmt::Display>(x: T, min: T, max: T) -> Result<(), String> {
        if x < min || x > max {
            return Err(format!("= {x} is outside {min}..={max}"));
        }
        Ok(())
    }
    if let Some(p) = pspec.downcast_ref::<glib::ParamSpecUInt>() {
        range(v.get::<u32>().map_err(|e| e.to_string())?, p.minimum(), p.maximum())?;
    } else if let Some(p) = pspec.downcast_ref::<glib::ParamSpecDouble>() {
        range(v.get::<f64>().map_err(|e| e.to_string())?, p.minimum(), p.maximum())?;
    }
    Ok(v)
}

/// Noise level property (8-bit units, -1 = estimate) to the engine's 0..=1 scale.
pub(super) fn sigma_01(level: f64) -> f32 {
    if level < 0.0 {
        -1.0
    } else {
        (level / 255.0) as f32
    }
}
