//! The inference backend as the queue sees it: something that runs the model on a
//! batch of frames, built on the inference thread.
use crate::tensors::Pooled;
use crate::{Error, Result};

/// Runs inference on a batch of frames of the same padded size.
pub trait Backend: Send + 'static {
    /// Reads `image` and `sigma` of each frame, writes the results (`image` with
    /// `denoised` set, `labels` or `logits` with `segmentation` set accordingly).
    fn run(&mut self, batch: &mut [Pooled]) -> Result<()>;

    /// What it runs on (for ONNX Runtime: the execution provider), for reports.
    fn name(&self) -> String {
        String::new()
    }

    /// What its build found in the TensorRT engine cache: "hit", "miss", or "off"
    /// (no engine cache), for reports.
    fn engine_cache(&self) -> &'static str {
        "off"
    }

    /// Another backend of the same model and options, for one more run in flight
    /// (`concurrent-runs`); called on the inference thread after the first build.
    fn replicate(&self) -> Result<Box<dyn Backend>> {
        Err(Error::Invalid(format!(
            "the {} backend runs one batch at a time (concurrent-runs must be 1)",
            self.name()
        )))
    }
}

/// Builds the backend on the inference thread (so that slow builds such as a TensorRT
/// engine never block the caller).
pub type BackendFactory = Box<dyn FnOnce() -> Result<Box<dyn Backend>> + Send>;
