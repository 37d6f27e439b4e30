//! Sessions: the execution provider (auto: TensorRT > CUDA > CPU), TensorRT options,
//! and the session build checked against the model contract.
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

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

fn provider_dispatch(
    env: &Environment,
    p: Provider,
    spec: &ModelSpec,
    opts: &SessionOptions,
) -> Result<ep::ExecutionProviderDispatch> {
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
                // The profile depends on the graph's fixed dimensions, known only from
                // the graph itself: read it first.
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
    let eps = [provider_dispatch(env, p, spec, opts)?];
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
    let graph = spec.check_graph(&decls(session.inputs()), &decls(session.outputs()))?;
    Ok(LoadedModel {
        session,
        provider,
        spec: spec.clone(),
        graph,
        warnings,
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
