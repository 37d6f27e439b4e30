//! Sessions: the execution provider (auto: TensorRT > CUDA > CPU), TensorRT options,
//! and the session build checked against the model contract.
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use super::cache::{hash_file, CacheKey, CacheOutcome, DeviceIdentity, EngineFiles};
use super::environment::tune_allocator;
use crate::model::{ElemType, GraphInfo, ModelSpec, TensorDecl};
use crate::preprocess::Layout;
use crate::{Error, Result};

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
/// A graph with a `fixed` input size (width, height) takes only that size; one with a
/// fixed batch only that batch.
pub fn tensorrt_profile(
    input: &str,
    layout: Layout,
    batch: usize,
    opt_size: (usize, usize),
    multiple: usize,
    graph: &GraphInfo,
) -> [String; 3] {
    let m = multiple.max(1);
    let (w, h) = opt_size;
    let max = (
        crate::model::round_up(TENSORRT_MAX_SIZE.0.max(w), m),
        crate::model::round_up(TENSORRT_MAX_SIZE.1.max(h), m),
    );
    let (min, opt, max) = match graph.fixed_size {
        Some(size) => (size, size, size),
        None => ((m, m), (w, h), max),
    };
    let (min_batch, batch) = match graph.fixed_batch {
        Some(b) => (b, b),
        None => (1, batch),
    };
    let shape = |n: usize, (w, h): (usize, usize)| {
        let dims = layout.shape(n, w, h).map(|d| d.to_string());
        format!("{input}:{}", dims.join("x"))
    };
    [shape(min_batch, min), shape(batch, opt), shape(batch, max)]
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

/// The TensorRT optimization profile option strings (min, opt, max) for the model's
/// inputs (the image, and sigma when the model has it) at `size`.
fn tensorrt_profile_options(
    env: &Environment,
    spec: &ModelSpec,
    opts: &SessionOptions,
    size: (usize, usize),
) -> Result<[String; 3]> {
    // The profile depends on the graph's fixed dimensions, known only from the graph
    // itself: read it first.
    let (inputs, outputs) = read_graph(env, &spec.path)?;
    let graph = spec.check_graph(&inputs, &outputs)?;
    let batch = graph.fixed_batch.unwrap_or(opts.batch_size);
    let [min, opt, max] = tensorrt_profile(
        &spec.image_input,
        spec.preprocess.layout,
        opts.batch_size,
        size,
        spec.size_multiple,
        &graph,
    );
    let min_batch = graph.fixed_batch.unwrap_or(1);
    let sigma = spec
        .sigma_input
        .as_ref()
        .map(|s| (format!(",{s}:{min_batch}x1x1x1"), format!(",{s}:{batch}x1x1x1")));
    let (s_min, s_max) = sigma.unwrap_or_default();
    Ok([
        format!("{min}{s_min}"),
        format!("{opt}{s_max}"),
        format!("{max}{s_max}"),
    ])
}

/// A TensorRT session's engine cache folder (keyed by [`CacheKey`]), made ready
/// before the build, and its engine files then.
struct PreparedCache {
    dir: PathBuf,
    before: EngineFiles,
}

/// Keys, creates and scans the engine cache folder under `base` for a TensorRT session.
fn prepare_cache(
    base: &Path,
    spec: &ModelSpec,
    opts: &SessionOptions,
    profile: Option<&[String; 3]>,
    warnings: &mut Vec<String>,
) -> Result<PreparedCache> {
    let (device, probe_warnings) = DeviceIdentity::probe(opts.device_id);
    warnings.extend(probe_warnings);
    let key = CacheKey {
        model_hash: hash_file(&spec.path)?,
        profile: profile.map_or_else(|| "none".to_string(), |p| p.join(";")),
        fp16: opts.fp16,
        ort: ort::info().to_string(),
        device,
    };
    let dir = key.create_folder(base)?;
    let before = EngineFiles::scan(&dir);
    Ok(PreparedCache { dir, before })
}

fn provider_dispatch(
    env: &Environment,
    p: Provider,
    spec: &ModelSpec,
    opts: &SessionOptions,
    warnings: &mut Vec<String>,
) -> Result<(ep::ExecutionProviderDispatch, Option<PreparedCache>)> {
    Ok(match p {
        Provider::TensorRt => {
            let mut trt = ep::TensorRT::default()
                .with_device_id(opts.device_id as i32)
                .with_fp16(opts.fp16);
            let profile = match opts.profile_size {
                Some(size) => Some(tensorrt_profile_options(env, spec, opts, size)?),
                None => None,
            };
            let cache = match &opts.engine_cache_dir {
                Some(base) => Some(prepare_cache(base, spec, opts, profile.as_ref(), warnings)?),
                None => None,
            };
            if let Some(c) = &cache {
                let d = c.dir.display().to_string();
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(&d)
                    .with_timing_cache(true)
                    .with_timing_cache_path(&d);
            }
            if let Some([min, opt, max]) = profile {
                trt = trt
                    .with_profile_min_shapes(min)
                    .with_profile_opt_shapes(opt)
                    .with_profile_max_shapes(max);
            }
            (trt.build().error_on_failure(), cache)
        }
        Provider::Cuda => (
            ep::CUDA::default()
                .with_device_id(opts.device_id as i32)
                .build()
                .error_on_failure(),
            None,
        ),
        Provider::Cpu | Provider::Auto => (ep::CPU::default().build().error_on_failure(), None),
    })
}

/// Builds a session for one provider; errors if that provider cannot be had.
fn session_for(
    env: &Environment,
    spec: &ModelSpec,
    p: Provider,
    opts: &SessionOptions,
    warnings: &mut Vec<String>,
) -> Result<(Session, BuildReport)> {
    if !provider_compiled_in(p) {
        return Err(Error::Provider {
            provider: p.name().into(),
            message: "the loaded ONNX Runtime library was built without it (the CPU library from \
                      `make setup`; run `make setup-gpu` for the GPU library)"
                .into(),
        });
    }
    let started = Instant::now();
    let (dispatch, cache) = provider_dispatch(env, p, spec, opts, warnings)?;
    let mut b = builder(env, opts)?
        .with_execution_providers([dispatch])
        .map_err(|e| Error::Provider {
            provider: p.name().into(),
            message: e.to_string(),
        })?;
    let session = b
        .commit_from_file(&spec.path)
        .map_err(|e| Error::Ort(format!("cannot load model {}: {e}", spec.path.display())))?;
    let report = BuildReport {
        time: started.elapsed(),
        cache: cache
            .as_ref()
            .map_or(CacheOutcome::Off, |c| c.before.outcome(&EngineFiles::scan(&c.dir))),
        cache_dir: cache.map(|c| c.dir),
    };
    Ok((session, report))
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
                        TensorElementType::Int32 => ElemType::I32,
                        TensorElementType::Int64 => ElemType::I64,
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

/// The inputs and outputs an ONNX file declares, read without building a session for
/// any provider (the graph is loaded on the CPU, unoptimised, and dropped).
pub fn read_graph(env: &Environment, path: &std::path::Path) -> Result<(Vec<TensorDecl>, Vec<TensorDecl>)> {
    let session = Session::builder(env)
        .map_err(oe)?
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .map_err(oe)?
        .with_intra_threads(1)
        .map_err(oe)?
        .commit_from_file(path)
        .map_err(|e| Error::Ort(format!("cannot load model {}: {e}", path.display())))?;
    Ok((decls(session.inputs()), decls(session.outputs())))
}

/// A session, the provider it runs on, and the contract it was checked against.
pub struct LoadedModel {
    pub session: Session,
    pub provider: Provider,
    pub spec: ModelSpec,
    /// What the graph fixes of its shapes.
    pub graph: GraphInfo,
    /// Warnings for the user (an `auto` fallback, say).
    pub warnings: Vec<String>,
    /// How the session's build went.
    pub build: BuildReport,
    /// The options it was built with.
    pub options: SessionOptions,
    /// The environment it was built in (for replicas of it).
    pub env: Environment,
}

/// How a session build went: its time (with TensorRT, the engine build or its load
/// from the cache) and what the engine cache gave.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    pub time: Duration,
    pub cache: CacheOutcome,
    /// The keyed cache folder (TensorRT with an `engine-cache-dir` only).
    pub cache_dir: Option<PathBuf>,
}

impl fmt::Display for BuildReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "built in {:.2} s", self.time.as_secs_f64())?;
        match &self.cache_dir {
            Some(dir) => write!(f, ", TensorRT engine cache {} in {}", self.cache, dir.display()),
            None => Ok(()),
        }
    }
}

/// Builds a session on the provider asked for (`auto`: TensorRT, CUDA, then CPU, with
/// a warning naming the one that runs) and checks the graph against the contract.
pub fn load_model(env: &Environment, spec: &ModelSpec, opts: &SessionOptions) -> Result<LoadedModel> {
    tune_allocator();
    let mut warnings = Vec::new();
    let ((session, build), provider) = match opts.provider {
        Provider::Auto => {
            let mut found = None;
            for p in [Provider::TensorRt, Provider::Cuda] {
                match session_for(env, spec, p, opts, &mut warnings) {
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
                    let s = session_for(env, spec, Provider::Cpu, opts, &mut warnings)?;
                    warnings.push("execution-provider=auto: running on cpu".into());
                    (s, Provider::Cpu)
                }
            }
        }
        p => (session_for(env, spec, p, opts, &mut warnings)?, p),
    };
    let graph = spec.check_graph(&decls(session.inputs()), &decls(session.outputs()))?;
    Ok(LoadedModel {
        session,
        provider,
        spec: spec.clone(),
        graph,
        warnings,
        build,
        options: opts.clone(),
        env: env.clone(),
    })
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
    fn tensorrt_profile_covers_batch_and_size() {
        let any = GraphInfo {
            fixed_size: None,
            fixed_batch: None,
            labels_elem: ElemType::U8,
        };
        let [min, opt, max] = tensorrt_profile("image", Layout::Nchw, 4, (1024, 512), 8, &any);
        assert_eq!(min, "image:1x3x8x8");
        assert_eq!(opt, "image:4x3x512x1024");
        assert_eq!(max, "image:4x3x2160x3840");
        // A size beyond 4K in use still fits, rounded to the multiple.
        let [_, opt, max] = tensorrt_profile("image", Layout::Nchw, 1, (4100, 2200), 16, &any);
        assert_eq!(opt, "image:1x3x2200x4100");
        assert_eq!(max, "image:1x3x2208x4112");
        // Channels last; a fixed size and batch are the only shape.
        let [min, _, _] = tensorrt_profile("x", Layout::Nhwc, 2, (640, 480), 1, &any);
        assert_eq!(min, "x:1x1x1x3");
        let fixed = GraphInfo {
            fixed_size: Some((1024, 512)),
            fixed_batch: Some(1),
            ..any
        };
        let [min, opt, max] = tensorrt_profile("x", Layout::Nhwc, 4, (640, 480), 1, &fixed);
        assert_eq!(min, "x:1x512x1024x3");
        assert_eq!(opt, min);
        assert_eq!(max, min);
    }
}
