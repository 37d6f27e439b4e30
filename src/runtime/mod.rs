//! ONNX Runtime: loading the C library, the one process-wide environment
//! ([`environment`](environment())), the choice of execution provider and the session
//! build ([`load_model`]), and the inference [`Backend`](crate::backend::Backend) the
//! frame queue runs ([`OrtBackend`]).
mod backend;
mod binding;
pub mod cache;
mod device;
mod environment;
mod session;

pub use ort::logging::LogLevel;

pub use backend::{bare_loop, BareLoopTiming, OrtBackend};
pub use environment::{
    environment, library_candidates, set_log_sink, tune_allocator, LogSink, ORT_LIBRARY_NAME, ORT_VERSION,
};
pub use session::{
    load_model, provider_compiled_in, read_graph, tensorrt_profile, BuildReport, LoadedModel, Provider, SessionOptions,
    TENSORRT_MAX_SIZE,
};
