//! The traits through which the queue runs what it does not know: [`Processor`] (the
//! element's frame-to-tensors and results-to-output steps) and [`Stages`] (the
//! engine's model-specific steps around it), and [`NoStages`], which does nothing.
use super::Tunables;
use crate::tensors::{Pooled, Tensors};
use crate::Result;

/// The element-specific stages: turning a frame into tensors and results into output.
pub trait Processor: Send + Sync + 'static {
    /// What `submit` takes (for a GStreamer element: the mapped input buffer and its metadata).
    type Frame: Send + 'static;
    /// What `recv` gives back for each frame.
    type Output: Send + 'static;
    /// Pre-processing worker: fill `t.image` (planar, padded) from the frame. The frame
    /// may release what it no longer needs (an upstream buffer) here.
    fn pre(&self, frame: &mut Self::Frame, t: &mut Tensors) -> Result<()>;
    /// Post-processing worker: make the output from the results in `t`.
    fn post(&self, frame: Self::Frame, t: &mut Tensors) -> Result<Self::Output>;
}

/// Steps the queue runs on every frame around the [`Processor`] without knowing what
/// they do: the engine's model-specific ones are `crate::processing::ModelStages`;
/// [`NoStages`] does nothing. Each pre-processing worker and the inference thread make
/// their own state once, when they start, so that the steps share nothing and allocate
/// nothing per frame.
pub trait Stages: Send + Sync + 'static {
    /// The state of one pre-processing worker.
    fn pre_stage(&self) -> Box<dyn PreStage>;
    /// The state of the inference thread.
    fn batch_stage(&self) -> Box<dyn BatchStage>;
    /// On a post-processing worker, before `Processor::post`.
    fn post_stage(&self, t: &mut Tensors);
}

/// A pre-processing worker's step, right after `Processor::pre`.
pub trait PreStage: Send {
    fn run(&mut self, t: &mut Tensors, tunables: &Tunables);
}

/// The inference thread's step on each batch, right before `Backend::run`.
pub trait BatchStage: Send {
    /// After a flush: nothing from before it carries over.
    fn reset(&mut self);
    fn run(&mut self, batch: &mut [Pooled], tunables: &Tunables);
}

/// No steps around the processor.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStages;

impl Stages for NoStages {
    fn pre_stage(&self) -> Box<dyn PreStage> {
        Box::new(NoStages)
    }
    fn batch_stage(&self) -> Box<dyn BatchStage> {
        Box::new(NoStages)
    }
    fn post_stage(&self, _t: &mut Tensors) {}
}

impl PreStage for NoStages {
    fn run(&mut self, _t: &mut Tensors, _tunables: &Tunables) {}
}

impl BatchStage for NoStages {
    fn reset(&mut self) {}
    fn run(&mut self, _batch: &mut [Pooled], _tunables: &Tunables) {}
}
