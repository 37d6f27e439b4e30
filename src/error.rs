//! The engine's error type.
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("model sidecar {path}: {message}")]
    Sidecar { path: PathBuf, message: String },
    #[error("model {path} breaks the model contract: {message}")]
    Contract { path: PathBuf, message: String },
    #[error("ONNX Runtime library: {0}")]
    Library(String),
    #[error("execution provider {provider}: {message}")]
    Provider { provider: String, message: String },
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    #[error("frame: {0}")]
    Frame(String),
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error("worker panicked: {0}")]
    Panic(String),
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Ort(e.to_string())
    }
}
