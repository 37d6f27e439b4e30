//! The inference backend as the queue sees it: something that runs the model on a
//! batch of frames, built on the inference thread.
use crate::tensors::Pooled;
use crate::Result;

/// Runs inference on a batch of frames of the same padded size.
pub trait Backend: Send + 'static {
    /// Reads `image` and `sigma` of each frame, writes the results (`image` with
    /// `denoised` set, `labels` or `logits` with `segmentation` set accordingly).
    fn run(&mut self, batch: &mut [Pooled]) -> Result<()>;

    /// What it runs on (for ONNX Runtime: the execution provider), for reports.
    fn name(&self) -> String {
        String::new()
    }
}

/// Builds the backend on the inference thread (so that slow builds such as a TensorRT
/// engine never block the caller).
pub type BackendFactory = Box<dyn FnOnce() -> Result<Box<dyn Backend>> + Send>;
