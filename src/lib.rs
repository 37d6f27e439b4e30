//! denoiseseg engine: joint denoising and semantic segmentation of video frames on
//! ONNX Runtime, with no GStreamer dependency.
pub mod backend;
pub mod config;
pub mod convert;
pub mod error;
pub mod frame;
pub mod metrics;
pub mod model;
pub mod noise;
pub mod preprocess;
pub mod processing;
pub mod queue;
pub mod runtime;
pub mod sidecar;
pub mod stabilize;
pub mod tensors;

pub use error::{Error, Result};
