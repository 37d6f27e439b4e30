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
    /// The caller asked a long loop to stop (Ctrl-C).
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// A copy with the same variant and text (an I/O error keeps its kind and message),
    /// for reporting one failure at several frames' positions.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Sidecar { path, message } => Error::Sidecar {
                path: path.clone(),
                message: message.clone(),
            },
            Error::Contract { path, message } => Error::Contract {
                path: path.clone(),
                message: message.clone(),
            },
            Error::Library(m) => Error::Library(m.clone()),
            Error::Provider { provider, message } => Error::Provider {
                provider: provider.clone(),
                message: message.clone(),
            },
            Error::Ort(m) => Error::Ort(m.clone()),
            Error::Frame(m) => Error::Frame(m.clone()),
            Error::Invalid(m) => Error::Invalid(m.clone()),
            Error::Panic(m) => Error::Panic(m.clone()),
            Error::Interrupted => Error::Interrupted,
        }
    }
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Ort(e.to_string())
    }
}
