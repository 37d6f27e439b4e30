//! Per-frame tensors: what the queue's stages and the backend read and write for one
//! frame, and the pool that reuses them from frame to frame.
use std::ops::{Deref, DerefMut};

use crossbeam_channel::{Receiver, Sender};

use crate::model::round_up;
use crate::preprocess::Placement;

/// Per-frame tensors: the padded planar input image, and the model's results.
/// Reused from frame to frame through a pool.
#[derive(Debug, Default)]
pub struct Tensors {
    /// Frame size.
    pub width: usize,
    pub height: usize,
    /// Padded size fed to the model (multiples of the model's `size_multiple`).
    pub pw: usize,
    pub ph: usize,
    /// Planar RGB float [3, ph, pw] in [0,1]: the input, replaced by the model's
    /// `denoised` output after inference when the model has one (`denoised` is then set).
    pub image: Vec<f32>,
    pub denoised: bool,
    /// Class map [ph, pw] (row stride `pw`), valid when `segmentation` is `Labels`.
    pub labels: Vec<u8>,
    /// Raw logits [classes, h, w], valid when `segmentation` is `Logits`.
    pub logits: Vec<f32>,
    /// What the model gave for segmentation.
    pub segmentation: Segmentation,
    /// Per-frame noise estimate ([0,1] scale), or -1 when not estimated.
    pub sigma_estimate: f32,
    /// The sigma fed to the model ([0,1] scale).
    pub sigma: f32,
    /// What was wrong with the model's outputs for this frame (and mended).
    pub faults: OutputFaults,
    /// Where the frame lay in the model's input, so that `logits` map back to it: the
    /// padded frame itself unless the model has a fixed input size.
    pub placement: Placement,
}

/// The segmentation result of one frame.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Segmentation {
    /// None (a model that only denoises, or no result yet).
    #[default]
    None,
    /// A class map in `labels`.
    Labels,
    /// Raw logits in `logits`, [classes, h, w], covering the model input (see
    /// `Tensors::placement`); post-processing turns them into `Labels`.
    Logits { classes: usize, h: usize, w: usize },
}

/// Invalid values a backend found in one frame's outputs and replaced, so that
/// nothing undefined leaves the engine; the element reports them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutputFaults {
    /// NaN or infinite values in `denoised` (the input value is kept there).
    pub nonfinite_denoised: usize,
    /// NaN values in `logits` (they never win the argmax).
    pub nan_logits: usize,
    /// Class ids in `labels` outside the sidecar's classes (replaced by 0).
    pub bad_labels: usize,
}

impl OutputFaults {
    pub fn any(&self) -> bool {
        *self != OutputFaults::default()
    }
}

impl Tensors {
    /// Whether `labels` holds the frame's class map.
    pub fn has_labels(&self) -> bool {
        self.segmentation == Segmentation::Labels
    }

    fn prepare(&mut self, width: usize, height: usize, pw: usize, ph: usize) {
        self.width = width;
        self.height = height;
        self.pw = pw;
        self.ph = ph;
        // Vec::resize reallocates only when the size grows (a caps change).
        self.image.resize(3 * pw * ph, 0.0);
        self.labels.resize(pw * ph, 0);
        self.denoised = false;
        self.segmentation = Segmentation::None;
        self.sigma_estimate = -1.0;
        self.sigma = 0.0;
        self.faults = OutputFaults::default();
        self.placement = Placement::padded(pw, ph);
    }
}

/// A pooled [`Tensors`]: returns to its pool when dropped.
pub struct Pooled {
    tensors: Option<Box<Tensors>>,
    home: Sender<Box<Tensors>>,
}

impl Pooled {
    /// Tensors outside any queue (a benchmark's bare inference loop, tests): dropping
    /// them just frees them.
    pub fn standalone(tensors: Tensors) -> Pooled {
        let (home, _) = crossbeam_channel::bounded(1);
        Pooled {
            tensors: Some(Box::new(tensors)),
            home,
        }
    }
}

impl Deref for Pooled {
    type Target = Tensors;
    fn deref(&self) -> &Tensors {
        self.tensors.as_ref().expect("pooled tensors present until drop")
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Tensors {
        self.tensors.as_mut().expect("pooled tensors present until drop")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(t) = self.tensors.take() {
            let _ = self.home.try_send(t);
        }
    }
}

impl Tensors {
    /// Sizes the tensors for a frame of `width` x `height` padded to `size_multiple`.
    /// Called by `Processor::pre` before it writes the image.
    pub fn set_size(&mut self, width: usize, height: usize, size_multiple: usize) {
        let m = size_multiple.max(1);
        self.prepare(width, height, round_up(width, m), round_up(height, m));
    }
}

/// The pool [`Pooled`] tensors come from and go back to: at most `capacity` idle ones
/// are kept, so a steady stream allocates nothing per frame.
pub(crate) struct Pool {
    tx: Sender<Box<Tensors>>,
    rx: Receiver<Box<Tensors>>,
}

impl Pool {
    pub(crate) fn new(capacity: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Pool { tx, rx }
    }

    /// Idle tensors from the pool, or new ones when none is idle.
    pub(crate) fn get(&self) -> Pooled {
        let t = self.rx.try_recv().unwrap_or_default();
        Pooled {
            tensors: Some(t),
            home: self.tx.clone(),
        }
    }
}
