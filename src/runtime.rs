//! ONNX Runtime: loading the C library, the one process-wide environment, the choice
//! of execution provider, and the inference [`Backend`] the frame queue runs.
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
pub use ort::logging::LogLevel;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::backend::Backend;
use crate::model::{ElemType, ModelSpec, TensorDecl};
use crate::tensors::{Pooled, Segmentation, Tensors};
use crate::{convert, Error, Result};

/// The ONNX Runtime version the project is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// The library's file name (the versioned soname; never put an unversioned
/// `libonnxruntime.so` in a GStreamer plugin folder).
pub const ORT_LIBRARY_NAME: &str = "libonnxruntime.so.1";

/// Where ONNX Runtime's own log lines go: (level, message). Set once, before the
/// first session, by the embedding application (the plugin forwards it to a
/// GStreamer debug category).
pub type LogSink = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

static LOG_SINK: OnceLock<LogSink> = OnceLock::new();
static ENV: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);

/// Sets where ONNX Runtime logs go; only the first call counts.
pub fn set_log_sink(sink: LogSink) {
    let _ = LOG_SINK.set(sink);
}

/// The candidate library paths, in order: an explicit path, `ORT_DYLIB_PATH`, the
/// library beside `beside` (the plugin's own folder), then the bare soname.
pub fn library_candidates(explicit: Option<&Path>, beside: Option<&Path>) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        c.push(p.to_path_buf());
        return c; // an explicit choice is the only one tried
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        c.push(PathBuf::from(p));
    }
    if let Some(dir) = beside {
        c.push(dir.join(ORT_LIBRARY_NAME));
    }
    c.push(PathBuf::from(ORT_LIBRARY_NAME));
    c
}

/// Loads ONNX Runtime (first candidate that loads) and creates the process-wide
/// environment, once; later calls return the same environment and the path it came
/// from. A failure is not cached: a later call with other candidates may succeed.
pub fn environment(candidates: &[PathBuf]) -> Result<(Environment, PathBuf)> {
    let mut env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((e, p)) = env.as_ref() {
        return Ok((e.clone(), p.clone()));
    }
    let mut errors = Vec::new();
    for path in candidates {
        let builder = match ort::init_from(path) {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let builder = builder.with_name("denoiseseg").with_telemetry(false);
        let builder = match LOG_SINK.get() {
            Some(sink) => {
                let sink = sink.clone();
                builder.with_logger(Arc::new(move |level, _category, _id, _location, msg| sink(level, msg)))
            }
            None => builder,
        };
        let built = builder.build().map_err(|e| Error::Library(e.to_string()))?;
        *env = Some((built.clone(), path.clone()));
        return Ok((built, path.clone()));
    }
    Err(Error::Library(format!(
        "cannot load ONNX Runtime {ORT_VERSION} ({ORT_LIBRARY_NAME}); tried {}. Run `make setup` \
         (or scripts/setup-ort.sh), or set the element's ort-library property or ORT_DYLIB_PATH",
        if errors.is_empty() {
            "nothing".to_string()
        } else {
            errors.join("; ")
        }
    )))
}

/// Makes glibc keep and reuse the large blocks ONNX Runtime allocates on every run.
///
/// ONNX Runtime's CPU kernels allocate and free activation-sized buffers (a 64-channel
/// 1024x512 float map is 128 MiB) on every run. glibc serves blocks that large with
/// fresh `mmap`s, or, on a thread other than `main`, from per-thread heaps that it
/// shrinks again on free; either way each run pays about 100 000 page faults. Measured
/// with `denoiseseg bench` (1024x512, CPU): one model run took 300 ms on the frame
/// queue's inference thread against 239 ms in a bare loop on `main`; with this
/// tuning, 250 ms against 238 ms. It puts every thread on the main arena, never
/// `mmap`s and never trims, so the process keeps its peak heap instead of handing it
/// back between frames. Call it before the threads that run models start (the element
/// does, before its frame queue; [`load_model`] does too); it acts once per process. `DENOISESEG_KEEP_MALLOC=1` leaves the allocator alone.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("DENOISESEG_KEEP_MALLOC").is_some_and(|v| !v.is_empty() && v != "0") {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's allocation policy; it is thread-safe.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}

/// Which execution provider runs the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Provider {
    /// TensorRT, then CUDA, then CPU, whichever can be had first.
    #[default]
    Auto,
    TensorRt,
    Cuda,
    Cpu,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::Auto => "auto",
            Provider::TensorRt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provider {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Provider::Auto),
            "tensorrt" | "trt" => Ok(Provider::TensorRt),
            "cuda" => Ok(Provider::Cuda),
            "cpu" => Ok(Provider::Cpu),
            other => Err(Error::Invalid(format!(
                "execution provider '{other}' is not one of auto, tensorrt, cuda, cpu"
            ))),
        }
    }
}

/// How to build a session.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub provider: Provider,
    pub device_id: u32,
    /// TensorRT: build the engine with fp16 kernels.
    pub fp16: bool,
    /// TensorRT engine and timing caches; `None` disables the caches.
    pub engine_cache_dir: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default: one per core).
    pub intra_threads: usize,
    /// Batch size, and the padded frame size (width, height) TensorRT tunes its kernels
    /// for (the engine accepts any size up to [`TENSORRT_MAX_SIZE`]).
    pub batch_size: usize,
    pub profile_size: Option<(usize, usize)>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            provider: Provider::Auto,
            device_id: 0,
            fp16: true,
            engine_cache_dir: None,
            intra_threads: 0,
            batch_size: 1,
            profile_size: None,
        }
    }
}

/// Whether the loaded ONNX Runtime library was built with the provider's support.
pub fn provider_compiled_in(p: Provider) -> bool {
    match p {
        Provider::TensorRt => ep::TensorRT::is_available().unwrap_or(false),
        Provider::Cuda => ep::CUDA::is_available().unwrap_or(false),
        Provider::Cpu | Provider::Auto => true,
    }
}

/// The largest frame (width, height) a TensorRT engine accepts: 4K UHD.
pub const TENSORRT_MAX_SIZE: (usize, usize) = (3840, 2160);

/// The TensorRT optimization profile for `image`, as (min, opt, max) shape strings:
/// any frame from one `multiple` square up to [`TENSORRT_MAX_SIZE`] (padded) and any
/// batch up to `batch` runs on one engine, so a caps change never needs a rebuild;
/// kernels are tuned for `batch` frames of `opt_size` (width, height), the size in use.
pub fn tensorrt_profile(input: &str, batch: usize, opt_size: (usize, usize), multiple: usize) -> [String; 3] {
    let m = multiple.max(1);
    let (w, h) = opt_size;
    let (mw, mh) = (
        crate::model::round_up(TENSORRT_MAX_SIZE.0.max(w), m),
        crate::model::round_up(TENSORRT_MAX_SIZE.1.max(h), m),
    );
    [
        format!("{input}:1x3x{m}x{m}"),
        format!("{input}:{batch}x3x{h}x{w}"),
        format!("{input}:{batch}x3x{mh}x{mw}"),
    ]
}

fn oe<R>(e: ort::Error<R>) -> Error {
    Error::Ort(e.to_string())
}

fn builder(env: &Environment, opts: &SessionOptions) -> Result<SessionBuilder> {
    let mut b = Session::builder(env)
        .map_err(oe)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(oe)?
        // Several stages share the cores: no busy-waiting between runs.
        .with_intra_op_spinning(false)
        .map_err(oe)?;
    if opts.intra_threads > 0 {
        b = b.with_intra_threads(opts.intra_threads).map_err(oe)?;
    }
    Ok(b)
}

fn provider_dispatch(p: Provider, spec: &ModelSpec, opts: &SessionOptions) -> Result<ep::ExecutionProviderDispatch> {
    Ok(match p {
        Provider::TensorRt => {
            let mut trt = ep::TensorRT::default()
                .with_device_id(opts.device_id as i32)
                .with_fp16(opts.fp16);
            if let Some(dir) = &opts.engine_cache_dir {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                let d = dir.display().to_string();
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(&d)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&d);
            }
            if let Some(size) = opts.profile_size {
                let [min, opt, max] = tensorrt_profile(&spec.image_input, opts.batch_size, size, spec.size_multiple);
                let sigma = spec
                    .sigma_input
                    .as_ref()
                    .map(|s| (format!(",{s}:1x1x1x1"), format!(",{s}:{}x1x1x1", opts.batch_size)));
                let (s_min, s_max) = sigma.unwrap_or_default();
                trt = trt
                    .with_profile_min_shapes(format!("{min}{s_min}"))
                    .with_profile_opt_shapes(format!("{opt}{s_max}"))
                    .with_profile_max_shapes(format!("{max}{s_max}"));
            }
            trt.build().error_on_failure()
        }
        Provider::Cuda => ep::CUDA::default()
            .with_device_id(opts.device_id as i32)
            .build()
            .error_on_failure(),
        Provider::Cpu | Provider::Auto => ep::CPU::default().build().error_on_failure(),
    })
}

/// Builds a session for one provider; errors if that provider cannot be had.
fn session_for(env: &Environment, spec: &ModelSpec, p: Provider, opts: &SessionOptions) -> Result<Session> {
    if !provider_compiled_in(p) {
        return Err(Error::Provider {
            provider: p.name().into(),
            message: "the loaded ONNX Runtime library was built without it (the CPU library from \
                      `make setup`; run `make setup-gpu` for the GPU library)"
                .into(),
        });
    }
    let eps = [provider_dispatch(p, spec, opts)?];
    let mut b = builder(env, opts)?
        .with_execution_providers(eps)
        .map_err(|e| Error::Provider {
            provider: p.name().into(),
            message: e.to_string(),
        })?;
    b.commit_from_file(&spec.path)
        .map_err(|e| Error::Ort(format!("cannot load model {}: {e}", spec.path.display())))
}

/// Describes a graph's inputs or outputs for the contract check.
fn decls(outlets: &[ort::value::Outlet]) -> Vec<TensorDecl> {
    outlets
        .iter()
        .map(|o| {
            let (elem, dims) = match o.dtype() {
                ValueType::Tensor { ty, shape, .. } => (
                    match ty {
                        TensorElementType::Float32 => ElemType::F32,
                        TensorElementType::Uint8 => ElemType::U8,
                        _ => ElemType::Other,
                    },
                    Some(shape.iter().map(|&d| (d > 0).then_some(d)).collect()),
                ),
                _ => (ElemType::Other, None),
            };
            TensorDecl {
                name: o.name().to_string(),
                elem,
                dims,
            }
        })
        .collect()
}

/// A session, the provider it runs on, and the contract it was checked against.
pub struct LoadedModel {
    pub session: Session,
    pub provider: Provider,
    pub spec: ModelSpec,
    /// Warnings for the user (an `auto` fallback, say).
    pub warnings: Vec<String>,
}

/// Builds a session on the provider asked for (`auto`: TensorRT, CUDA, then CPU, with
/// a warning naming the one that runs) and checks the graph against the contract.
pub fn load_model(env: &Environment, spec: &ModelSpec, opts: &SessionOptions) -> Result<LoadedModel> {
    tune_allocator();
    let mut warnings = Vec::new();
    let (session, provider) = match opts.provider {
        Provider::Auto => {
            let mut found = None;
            for p in [Provider::TensorRt, Provider::Cuda] {
                match session_for(env, spec, p, opts) {
                    Ok(s) => {
                        found = Some((s, p));
                        break;
                    }
                    Err(e) => warnings.push(format!("{p} unavailable: {e}")),
                }
            }
            match found {
                Some(f) => f,
                None => {
                    let s = session_for(env, spec, Provider::Cpu, opts)?;
                    warnings.push("execution-provider=auto: running on cpu".into());
                    (s, Provider::Cpu)
                }
            }
        }
        p => (session_for(env, spec, p, opts)?, p),
    };
    spec.check_graph(&decls(session.inputs()), &decls(session.outputs()))?;
    Ok(LoadedModel {
        session,
        provider,
        spec: spec.clone(),
        warnings,
    })
}

/// The [`Backend`] on an ONNX Runtime session.
pub struct OrtBackend {
    model: LoadedModel,
    /// Batch input, reused (batches of more than one frame are copied into it).
    batch_image: Vec<f32>,
    sigma: Vec<f32>,
}

impl OrtBackend {
    pub fn new(model: LoadedModel) -> Self {
        OrtBackend {
            model,
            batch_image: Vec::new(),
            sigma: Vec::new(),
        }
    }

    pub fn provider(&self) -> Provider {
        self.model.provider
    }
}

impl Backend for OrtBackend {
    fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        let n = batch.len();
        let (pw, ph) = (first.pw, first.ph);
        let frame_len = 3 * pw * ph;
        let spec = &self.model.spec;
        let shape = [n, 3, ph, pw];
        // One frame: the frame's own tensor, no copy. Several: one contiguous batch.
        let image: &[f32] = if n == 1 {
            &first.image[..frame_len]
        } else {
            self.batch_image.resize(n * frame_len, 0.0);
            for (dst, t) in self.batch_image.chunks_exact_mut(frame_len).zip(batch.iter()) {
                dst.copy_from_slice(&t.image[..frame_len]);
            }
            &self.batch_image
        };
        let image = TensorRef::from_array_view((shape, image))?;
        self.sigma.clear();
        self.sigma.extend(batch.iter().map(|t| t.sigma));
        let sigma = TensorRef::from_array_view(([n, 1, 1, 1], &self.sigma[..]))?;
        let outputs = match &spec.sigma_input {
            Some(name) => self.model.session.run(ort::inputs![
                spec.image_input.as_str() => image,
                name.as_str() => sigma,
            ])?,
            None => self
                .model
                .session
                .run(ort::inputs![spec.image_input.as_str() => image])?,
        };

        let bad_shape = |what: &str, got: &[i64]| Error::Contract {
            path: spec.path.clone(),
            message: format!("output '{what}' has shape {got:?} for an input of {shape:?}"),
        };
        if let Some(name) = &spec.denoised_output {
            let (s, data) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            if **s != [n as i64, 3, ph as i64, pw as i64] {
                return Err(bad_shape(name, s));
            }
            for (src, t) in data.chunks_exact(frame_len).zip(batch.iter_mut()) {
                t.faults.nonfinite_denoised = convert::copy_finite(&mut t.image[..frame_len], src);
                t.denoised = true;
            }
        }
        if let Some(name) = &spec.labels_output {
            let (s, data) = outputs[name.as_str()].try_extract_tensor::<u8>()?;
            if **s != [n as i64, ph as i64, pw as i64] {
                return Err(bad_shape(name, s));
            }
            let classes = spec.classes.len();
            for (src, t) in data.chunks_exact(pw * ph).zip(batch.iter_mut()) {
                t.faults.bad_labels = convert::copy_class_ids(&mut t.labels[..pw * ph], src, classes);
                t.segmentation = Segmentation::Labels;
            }
        }
        if let Some(name) = &spec.logits_output {
            let (s, data) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            let ok = s.len() == 4 && s[0] == n as i64 && s[1] as usize == spec.classes.len() && s[2] > 0 && s[3] > 0;
            if !ok {
                return Err(bad_shape(name, s));
            }
            let (c, lh, lw) = (s[1] as usize, s[2] as usize, s[3] as usize);
            let len = c * lh * lw;
            for (src, t) in data.chunks_exact(len).zip(batch.iter_mut()) {
                t.logits.resize(len, 0.0);
                t.faults.nan_logits = convert::copy_logits(&mut t.logits, src);
                t.segmentation = Segmentation::Logits {
                    classes: c,
                    h: lh,
                    w: lw,
                };
            }
        }
        Ok(())
    }
}

/// The timing of a [`bare_loop`].
#[derive(Clone, Debug, Default)]
pub struct BareLoopTiming {
    /// Frames timed (after the warm-up): a whole number of batches.
    pub frames: usize,
    /// Wall time of the timed batches (inference only).
    pub elapsed: Duration,
    /// Each timed batch's time.
    pub batch_times: Vec<Duration>,
}

impl BareLoopTiming {
    /// Frames per second over the timed batches (0 when nothing was timed).
    pub fn fps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if self.frames == 0 || s <= 0.0 {
            0.0
        } else {
            self.frames as f64 / s
        }
    }
}

/// Copies a frame's model input (sizes, padded planar image, sigma) into `dst` and
/// clears its results, as the queue's pre-processing would leave it.
fn load_input(dst: &mut Tensors, src: &Tensors) {
    dst.width = src.width;
    dst.height = src.height;
    dst.pw = src.pw;
    dst.ph = src.ph;
    dst.image.clear();
    dst.image.extend_from_slice(&src.image);
    dst.labels.resize(src.pw * src.ph, 0);
    dst.denoised = false;
    dst.segmentation = Segmentation::None;
    dst.sigma_estimate = src.sigma_estimate;
    dst.sigma = src.sigma;
    dst.faults = Default::default();
}

/// A bare inference loop, the yardstick of the element's frame queue: runs `backend`
/// on batches of `batch` frames taken in turn from `inputs` (prepared tensors: sizes,
/// padded planar `image`, `sigma`), first `warmup` frames untimed, then at least
/// `frames` frames timed (both rounded up to whole batches). Before every run each
/// frame's input is restored from `inputs`, outside the timing (a backend replaces
/// `image` with the denoised output), so every run sees the same tensors.
pub fn bare_loop(
    backend: &mut dyn Backend,
    inputs: &[Tensors],
    batch: usize,
    warmup: usize,
    frames: usize,
) -> Result<BareLoopTiming> {
    if inputs.is_empty() {
        return Err(Error::Invalid("bare loop: no input frames".into()));
    }
    let batch = batch.max(1);
    let mut slots: Vec<Pooled> = (0..batch).map(|_| Pooled::standalone(Tensors::default())).collect();
    let mut next = 0usize;
    let mut timing = BareLoopTiming::default();
    let warmup_batches = warmup.div_ceil(batch);
    let timed_batches = frames.div_ceil(batch);
    for i in 0..warmup_batches + timed_batches {
        for slot in slots.iter_mut() {
            load_input(slot, &inputs[next % inputs.len()]);
            next += 1;
        }
        let t0 = Instant::now();
        backend.run(&mut slots)?;
        let dt = t0.elapsed();
        if i >= warmup_batches {
            timing.frames += batch;
            timing.elapsed += dt;
            timing.batch_times.push(dt);
        }
    }
    Ok(timing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_round_trip() {
        for p in [Provider::Auto, Provider::TensorRt, Provider::Cuda, Provider::Cpu] {
            assert_eq!(p.name().parse::<Provider>().unwrap(), p);
        }
        let e = "opencl".parse::<Provider>().unwrap_err();
        assert!(e.to_string().contains("auto, tensorrt, cuda, cpu"), "{e}");
    }

    #[test]
    fn explicit_library_is_the_only_candidate() {
        let c = library_candidates(Some(Path::new("/x/libonnxruntime.so.1")), Some(Path::new("/p")));
        assert_eq!(c, vec![PathBuf::from("/x/libonnxruntime.so.1")]);
        let c = library_candidates(None, Some(Path::new("/p")));
        assert!(c.contains(&PathBuf::from("/p/libonnxruntime.so.1")));
        assert_eq!(c.last().unwrap(), &PathBuf::from(ORT_LIBRARY_NAME));
    }

    #[test]
    fn tensorrt_profile_covers_batch_and_size() {
        let [min, opt, max] = tensorrt_profile("image", 4, (1024, 512), 8);
        assert_eq!(min, "image:1x3x8x8");
        assert_eq!(opt, "image:4x3x512x1024");
        assert_eq!(max, "image:4x3x2160x3840");
        // A size beyond 4K in use still fits, rounded to the multiple.
        let [_, opt, max] = tensorrt_profile("image", 1, (4100, 2200), 16);
        assert_eq!(opt, "image:1x3x2200x4100");
        assert_eq!(max, "image:1x3x2208x4112");
    }

    /// Replaces the image with 1 - image, like tests/models/joint.onnx, and records
    /// what it saw.
    struct Invert {
        seen: Vec<(f32, f32)>,
        sizes: Vec<usize>,
    }

    impl Backend for Invert {
        fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
            self.sizes.push(batch.len());
            for t in batch.iter_mut() {
                self.seen.push((t.image[0], t.sigma));
                t.image.iter_mut().for_each(|v| *v = 1.0 - *v);
                t.denoised = true;
            }
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        }
    }

    fn input(value: f32, sigma: f32) -> Tensors {
        let mut t = Tensors::default();
        t.set_size(5, 3, 4);
        t.image.fill(value);
        t.sigma = sigma;
        t
    }

    #[test]
    fn bare_loop_restores_inputs_and_counts_whole_batches() {
        let inputs = [input(0.25, 0.1), input(0.5, 0.2), input(0.75, 0.3)];
        let mut b = Invert {
            seen: Vec::new(),
            sizes: Vec::new(),
        };
        let timing = bare_loop(&mut b, &inputs, 2, 3, 5).unwrap();
        // 2 warm-up batches (3 frames rounded up) and 3 timed ones (5 rounded up).
        assert_eq!(b.sizes, vec![2; 5]);
        assert_eq!(timing.frames, 6);
        assert_eq!(timing.batch_times.len(), 3);
        assert!(timing.elapsed >= Duration::from_millis(6));
        assert!(timing.fps() > 0.0);
        // Inputs cycle and are never the previous run's output.
        let want: Vec<(f32, f32)> = (0..10).map(|i| (inputs[i % 3].image[0], inputs[i % 3].sigma)).collect();
        assert_eq!(b.seen, want);
        assert_eq!(inputs[0].image[0], 0.25);
    }

    #[test]
    fn bare_loop_needs_inputs() {
        let mut b = Invert {
            seen: Vec::new(),
            sizes: Vec::new(),
        };
        assert!(bare_loop(&mut b, &[], 1, 0, 1).is_err());
        assert_eq!(bare_loop(&mut b, &[input(0.0, 0.0)], 1, 0, 0).unwrap().fps(), 0.0);
    }
}
