//! The session's I/O binding: preallocated input and output tensors, bound once per
//! input shape and reused by every run of that shape, so that a run allocates no
//! tensor and copies each one once.
//!
//! - Inputs: the backend writes the frames (and sigma) into the bound input tensors,
//!   the one copy of each frame; ONNX Runtime reads them in place on the CPU, or copies
//!   them to the GPU from page-locked (`CUDA_PINNED`) host memory, by DMA, on CUDA and
//!   TensorRT. (A frame's own tensor cannot be bound without a copy: `ort` copies a
//!   borrowed input at binding time so that it never aliases, which would cost an
//!   allocation and a copy per run.)
//! - Outputs: a shape's first run lets ONNX Runtime allocate them (their shapes, with
//!   a stride-4 head say, are known only then); that run's shapes are then bound as
//!   preallocated tensors, which every later run of the shape writes into.
//!
//! A handful of shapes is kept (batch sizes below `batch-size` after a timeout, a caps
//! change); the least recently used one goes when a new one needs room.
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session, SessionOutputs};
use ort::value::{DynTensor, Tensor, ValueType};

use crate::model::ModelSpec;
use crate::{Error, Result};

/// The most input shapes bound at once.
const MAX_SLOTS: usize = 8;

/// One input shape's binding and its tensors.
pub(super) struct Slot {
    /// The input shape ([N, C, H, W] or [N, H, W, C]).
    shape: [usize; 4],
    pub(super) binding: IoBinding,
    pub(super) image: Tensor<f32>,
    pub(super) sigma: Option<Tensor<f32>>,
    /// Whether the outputs are bound as preallocated tensors (after the first run).
    outputs_bound: bool,
    last_use: u64,
}

/// The (name, element type, shape) of each output of a run.
pub(super) type OutputShapes = Vec<(String, ort::value::TensorElementType, Vec<i64>)>;

impl Slot {
    /// The outputs' shapes to bind after the slot's first run; `None` once bound.
    pub(super) fn outputs_to_bind(&self, outputs: &SessionOutputs<'_>) -> Option<OutputShapes> {
        if self.outputs_bound {
            return None;
        }
        let shapes = outputs
            .iter()
            .filter_map(|(name, value)| match value.dtype() {
                ValueType::Tensor { ty, shape, .. } => Some((name.to_string(), *ty, shape.to_vec())),
                _ => None,
            })
            .collect();
        Some(shapes)
    }
}

/// The bound shapes and the allocators of their tensors.
pub(super) struct Bindings {
    input_alloc: Allocator,
    output_alloc: Allocator,
    /// Page-locked host memory (CUDA, TensorRT): outputs are synchronized after a run.
    pinned: bool,
    slots: Vec<Slot>,
    uses: u64,
}

impl Bindings {
    /// Bindings on `session`: page-locked memory for a GPU provider (`gpu` with its
    /// device), plain host memory otherwise. Pinned memory that cannot be had falls
    /// back to host memory, with the reason returned as a warning.
    pub(super) fn new(session: &Session, gpu: Option<u32>) -> (Bindings, Option<String>) {
        let host = || Bindings {
            input_alloc: Allocator::default(),
            output_alloc: Allocator::default(),
            pinned: false,
            slots: Vec::new(),
            uses: 0,
        };
        let Some(device) = gpu else {
            return (host(), None);
        };
        let pinned = |kind| {
            MemoryInfo::new(
                AllocationDevice::CUDA_PINNED,
                device as i32,
                AllocatorType::Device,
                kind,
            )
            .and_then(|info| Allocator::new(session, info))
        };
        match (pinned(MemoryType::CPUInput), pinned(MemoryType::CPUOutput)) {
            (Ok(input_alloc), Ok(output_alloc)) => (
                Bindings {
                    input_alloc,
                    output_alloc,
                    pinned: true,
                    slots: Vec::new(),
                    uses: 0,
                },
                None,
            ),
            (Err(e), _) | (_, Err(e)) => (
                host(),
                Some(format!(
                    "no page-locked (CUDA_PINNED) host memory for the model's inputs and outputs ({e}): \
                     using pageable host memory, with slower copies to and from the GPU"
                )),
            ),
        }
    }

    pub(super) fn pinned(&self) -> bool {
        self.pinned
    }

    /// The slot for input `shape` (`rows` frames), bound on first use.
    pub(super) fn slot(&mut self, session: &Session, spec: &ModelSpec, shape: [usize; 4]) -> Result<&mut Slot> {
        self.uses += 1;
        let i = match self.slots.iter().position(|s| s.shape == shape) {
            Some(i) => i,
            None => {
                if self.slots.len() >= MAX_SLOTS {
                    let lru = (0..self.slots.len())
                        .min_by_key(|&i| self.slots[i].last_use)
                        .unwrap_or(0);
                    self.slots.swap_remove(lru);
                }
                let slot = self.bind(session, spec, shape).map_err(|e| {
                    Error::Ort(format!(
                        "cannot bind the model's inputs and outputs for shape {shape:?}: {e}"
                    ))
                })?;
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[i];
        slot.last_use = self.uses;
        Ok(slot)
    }

    fn bind(&self, session: &Session, spec: &ModelSpec, shape: [usize; 4]) -> ort::Result<Slot> {
        let mut binding = session.create_binding()?;
        let mut image = Tensor::<f32>::new(&self.input_alloc, shape)?;
        // Written whole by every run; zeroed once so that nothing uninitialised is ever read.
        image.try_extract_tensor_mut::<f32>()?.1.fill(0.0);
        binding.bind_input(spec.image_input.as_str(), &image)?;
        let sigma = match &spec.sigma_input {
            Some(name) => {
                let mut t = Tensor::<f32>::new(&self.input_alloc, [shape[0], 1, 1, 1])?;
                t.try_extract_tensor_mut::<f32>()?.1.fill(0.0);
                binding.bind_input(name.as_str(), &t)?;
                Some(t)
            }
            None => None,
        };
        let outputs = [&spec.denoised_output, &spec.labels_output, &spec.logits_output];
        for name in outputs.into_iter().flatten() {
            binding.bind_output_to_device(name.as_str(), self.output_alloc.memory_info())?;
        }
        Ok(Slot {
            shape,
            binding,
            image,
            sigma,
            outputs_bound: false,
            last_use: 0,
        })
    }

    /// Binds preallocated output tensors of `shapes` (a slot's first run's) to the slot
    /// of input `shape`.
    pub(super) fn bind_outputs(&mut self, shape: [usize; 4], shapes: OutputShapes) -> Result<()> {
        let Some(slot) = self.slots.iter_mut().find(|s| s.shape == shape) else {
            return Ok(());
        };
        for (name, ty, dims) in shapes {
            let tensor = DynTensor::new(&self.output_alloc, ty, dims)
                .map_err(|e| Error::Ort(format!("cannot allocate output '{name}': {e}")))?;
            slot.binding.bind_output(name.as_str(), tensor)?;
        }
        slot.outputs_bound = true;
        Ok(())
    }

    /// Shapes bound now (for tests).
    #[cfg(test)]
    pub(super) fn bound_shapes(&self) -> Vec<([usize; 4], bool)> {
        self.slots.iter().map(|s| (s.shape, s.outputs_bound)).collect()
    }
}
