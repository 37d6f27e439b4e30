//! Session start and stop: the model, ONNX Runtime, the frame queue and its backend factory.
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU8;
use std::sync::Arc;

use denoiseseg::backend::{Backend, BackendFactory};
use denoiseseg::model::{default_model_path, ModelSpec};
use denoiseseg::processing::ModelStages;
use denoiseseg::queue::{Engine, FrameQueue, QueueConfig};
use denoiseseg::runtime::{self, OrtBackend, Provider, SessionOptions};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::classmap::ClassMaps;
use super::ProviderChoice;
use super::*;

impl DenoiseSeg {
    /// READY -> PAUSED: check the model, load ONNX Runtime, start the queue (the session
    /// is built on the queue's inference thread, with Progress messages).
    pub(super) fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        if let Some(e) = &settings.config_error {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("config {}: {}", settings.config, e)
            ));
        }
        let plugin_dir = self.plugin_dir();
        let spec = load_spec(&settings, plugin_dir.as_deref())?;
        let load = self.load_onnx_runtime(&settings, plugin_dir.as_deref())?;
        if settings.max_in_flight() < settings.batch_size {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                (
                    "max-in-flight ({}) must be at least batch-size ({})",
                    settings.max_in_flight(),
                    settings.batch_size
                )
            ));
        }
        let opts = session_options(&settings, &spec);
        if !spec.segments() && lock(&self.mask_pad).as_ref().is_some_and(|p| p.is_linked()) {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Negotiation,
                (
                    "the model {} does not segment: the mask pad carries no class maps",
                    spec.path.display()
                )
            );
        }

        lock(&self.report).provider.clear();
        // The class map of the first frame starts the stabilization afresh.
        *lock(&self.stabilizer) = None;

        let proc = Arc::new(self.processor(&spec));
        let config = QueueConfig {
            batch_size: settings.batch_size as usize,
            max_in_flight: settings.max_in_flight() as usize,
            workers: settings.workers as usize,
            size_multiple: spec.size_multiple,
            concurrent_runs: settings.concurrent_runs as usize,
        };
        let stages = Arc::new(ModelStages::new(spec.sigma_input.is_some()));
        // Before the queue's threads start, so that they allocate as tuned.
        runtime::tune_allocator();
        // The element that builds a shared engine's session posts its Progress messages
        // from the factory; one that joins posts its own (below).
        let mut joined = None;
        let queue = if settings.model_instance_id.is_empty() {
            let factory = self.backend_factory(spec.clone(), opts, load);
            FrameQueue::new(config, self.tunables.clone(), proc, stages, factory)
                .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?
        } else {
            let id = &settings.model_instance_id;
            let runs = config.concurrent_runs;
            let mut builds_here = false;
            let engine = Engine::shared(id, shared_settings(&settings, &spec), config.batch_size, runs, || {
                builds_here = true;
                self.backend_factory(spec.clone(), opts, load)
            })
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("model-instance-id: {}", e)))?;
            joined = (!builds_here).then(|| id.clone());
            gst::info!(
                CAT,
                imp = self,
                "on the shared engine '{id}' ({} other streams)",
                engine.streams()
            );
            FrameQueue::with_engine(config, self.tunables.clone(), proc, stages, engine)
                .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?
        };
        gst::info!(
            CAT,
            imp = self,
            "model {} {} ({}), {} classes, size multiple {}",
            spec.name,
            spec.version,
            spec.kind(),
            spec.classes.len(),
            spec.size_multiple
        );
        let stats = queue.stats();
        if let Some(id) = &joined {
            let progress = ModelProgress(self.obj().downgrade());
            progress.start(&format!("joining the shared engine '{id}'"));
            if !stats.backend().is_empty() {
                progress.complete(&joined_ready(id, &stats));
                joined = None;
            }
        }
        *lock(&self.state) = Some(State {
            queue: Arc::new(queue),
            spec,
            info: None,
            stats,
            stream: Stream::default(),
            joined,
        });
        Ok(())
    }

    /// On the src pad task: the Progress Complete (a frame came out, so the shared
    /// engine's session is built) or Error (`failed`) of an element that joined a shared
    /// engine before its session was built, once.
    pub(super) fn finish_joined_progress(&self, failed: Option<&str>) {
        let Some((id, stats)) = lock(&self.state)
            .as_mut()
            .and_then(|s| s.joined.take().map(|id| (id, s.stats.clone())))
        else {
            return;
        };
        let progress = ModelProgress(self.obj().downgrade());
        match failed {
            None => progress.complete(&joined_ready(&id, &stats)),
            Some(e) => progress.error(&format!("the shared engine '{id}' failed: {e}")),
        }
    }

    /// The folder the plugin was loaded from (none for a statically registered plugin).
    fn plugin_dir(&self) -> Option<PathBuf> {
        self.obj()
            .factory()
            .and_then(|f| f.plugin())
            .and_then(|p| p.filename())
            .and_then(|f| f.parent().map(Path::to_path_buf))
    }

    /// Loads ONNX Runtime and returns what builds a session with it. Process-wide: it
    /// forwards ONNX Runtime's log to the `onnxruntime` debug category, and only the
    /// first library loaded in a process counts.
    fn load_onnx_runtime(
        &self,
        settings: &Settings,
        plugin_dir: Option<&Path>,
    ) -> Result<impl FnOnce(&ModelSpec, &SessionOptions) -> ModelResult + Send + 'static, gst::ErrorMessage> {
        runtime::set_log_sink(Arc::new(|level, msg| {
            use runtime::LogLevel as L;
            match level {
                L::Fatal | L::Error => gst::error!(ORT_CAT, "{msg}"),
                L::Warning => gst::warning!(ORT_CAT, "{msg}"),
                L::Info => gst::info!(ORT_CAT, "{msg}"),
                L::Verbose => gst::trace!(ORT_CAT, "{msg}"),
            }
        }));

        let explicit = (!settings.ort_library.is_empty()).then(|| PathBuf::from(&settings.ort_library));
        let candidates = runtime::library_candidates(explicit.as_deref(), plugin_dir);
        let (env, lib) =
            runtime::environment(&candidates).map_err(|e| gst::error_msg!(gst::LibraryError::Init, ("{}", e)))?;
        gst::info!(CAT, imp = self, "ONNX Runtime from {}", lib.display());
        Ok(move |spec: &ModelSpec, opts: &SessionOptions| runtime::load_model(&env, spec, opts))
    }

    /// What the post-processing workers need of the model and the element.
    fn processor(&self, spec: &ModelSpec) -> Proc {
        Proc {
            size_multiple: spec.size_multiple,
            maps: Arc::new(ClassMaps::new(spec)),
            keep_input: !spec.denoises(),
            tunables: self.live.clone(),
            element: self.obj().downgrade(),
            warned: AtomicU8::new(0),
            class0: spec.classes.first().map(|c| c.name.clone()).unwrap_or_default(),
        }
    }

    /// The queue's backend factory: builds the ONNX Runtime session with `load` on the
    /// queue's inference thread, announced with Progress messages, and records the provider.
    fn backend_factory(
        &self,
        spec: ModelSpec,
        opts: SessionOptions,
        load: impl FnOnce(&ModelSpec, &SessionOptions) -> ModelResult + Send + 'static,
    ) -> BackendFactory {
        let weak = self.obj().downgrade();
        let progress = ModelProgress(weak.clone());
        let report = self.report.clone();
        Box::new(move || {
            progress.start(&format!(
                "building the {} session for {} ({})",
                opts.provider,
                spec.name,
                spec.path.display()
            ));
            let started = std::time::Instant::now();
            match load(&spec, &opts) {
                Ok(model) => {
                    let backend = OrtBackend::new(model);
                    if let Some(el) = weak.upgrade() {
                        for w in backend.warnings() {
                            gst::warning!(CAT, obj = el, "{w}");
                        }
                        if opts.provider == Provider::Auto {
                            gst::warning!(CAT, obj = el, "execution-provider=auto runs on {}", backend.provider());
                        }
                    }
                    lock(&report).provider = backend.provider().name().to_string();
                    progress.complete(&format!(
                        "model ready on {} in {:.2} s (session {})",
                        backend.provider(),
                        started.elapsed().as_secs_f64(),
                        backend.build_report()
                    ));
                    Ok(Box::new(backend) as Box<dyn Backend>)
                }
                Err(e) => {
                    progress.error(&format!("model failed: {e}"));
                    Err(e)
                }
            }
        })
    }

    /// PAUSED -> READY: wake everything, stop the queue's threads.
    pub(super) fn stop(&self) {
        let state = lock(&self.state).take();
        if let Some(state) = state {
            let mut report = lock(&self.report);
            report.last_stats = state.stats.snapshot();
            let backend = state.stats.backend();
            if !backend.is_empty() {
                report.provider = backend;
            }
            drop(report);
            state.queue.shutdown();
            gst::debug!(CAT, imp = self, "stopped model {}", state.spec.name);
        }
    }
}

/// What a session build gives.
type ModelResult = denoiseseg::Result<runtime::LoadedModel>;

/// The Progress Complete text of an element that joined the shared engine `id`.
fn joined_ready(id: &str, stats: &queue::Stats) -> String {
    format!(
        "model ready on {} (the shared engine '{id}', whose first element built the session)",
        stats.backend()
    )
}

/// The model `model` names, or the shipped default, with its sidecar.
fn load_spec(settings: &Settings, plugin_dir: Option<&Path>) -> Result<ModelSpec, gst::ErrorMessage> {
    let model = if settings.model.is_empty() {
        default_model_path(plugin_dir)
    } else {
        PathBuf::from(&settings.model)
    };
    ModelSpec::load(&model).map_err(|e| gst::error_msg!(gst::ResourceError::OpenRead, ("model: {}", e)))
}

/// What elements sharing an engine (`model-instance-id`) must agree on, besides
/// batch-size: the model (its file, resolved), provider, device and precision.
fn shared_settings(settings: &Settings, spec: &ModelSpec) -> Vec<(String, String)> {
    let model = std::fs::canonicalize(&spec.path).unwrap_or_else(|_| spec.path.clone());
    let provider = glib::EnumValue::from_value(&settings.provider.to_value())
        .map(|(_, v)| v.nick().to_string())
        .unwrap_or_default();
    vec![
        ("model".into(), model.display().to_string()),
        ("execution-provider".into(), provider),
        ("device-id".into(), settings.device_id.to_string()),
        ("fp16".into(), settings.fp16.to_string()),
    ]
}

/// The session options the settings and the model ask for.
fn session_options(settings: &Settings, spec: &ModelSpec) -> SessionOptions {
    let provider = match settings.provider {
        ProviderChoice::Auto => Provider::Auto,
        ProviderChoice::TensorRt => Provider::TensorRt,
        ProviderChoice::Cuda => Provider::Cuda,
        ProviderChoice::Cpu => Provider::Cpu,
    };
    SessionOptions {
        provider,
        device_id: settings.device_id,
        fp16: settings.fp16,
        engine_cache_dir: (!settings.engine_cache_dir.is_empty()).then(|| PathBuf::from(&settings.engine_cache_dir)),
        intra_threads: settings.inference_threads as usize,
        batch_size: settings.batch_size as usize,
        profile_size: spec.input_size.map(|[w, h]| {
            let m = spec.size_multiple;
            (
                denoiseseg::model::round_up(w as usize, m),
                denoiseseg::model::round_up(h as usize, m),
            )
        }),
    }
}

/// The Progress messages (code `model`) of a session build, from the queue's inference
/// thread: [`start`](Self::start), then [`complete`](Self::complete) or
/// [`error`](Self::error). Each is also logged; nothing is posted once the element is gone.
struct ModelProgress(glib::WeakRef<super::super::DenoiseSeg>);

impl ModelProgress {
    fn start(&self, text: &str) {
        self.post(gst::ProgressType::Start, text);
    }

    fn complete(&self, text: &str) {
        self.post(gst::ProgressType::Complete, text);
    }

    fn error(&self, text: &str) {
        self.post(gst::ProgressType::Error, text);
    }

    fn post(&self, kind: gst::ProgressType, text: &str) {
        if let Some(el) = self.0.upgrade() {
            gst::info!(CAT, obj = el, "{text}");
            let _ = el.post_message(gst::message::Progress::builder(kind, "model", text).src(&el).build());
        }
    }
}
