//! The inference backend on an ONNX Runtime session, and the bare inference loop
//! that is its yardstick.
use std::time::{Duration, Instant};

use ort::value::TensorRef;

use super::session::{LoadedModel, Provider};
use crate::backend::Backend;
use crate::model::ElemType;
use crate::preprocess::{self, LabelValue, Placement, Scratch};
use crate::tensors::{Pooled, Segmentation, Tensors};
use crate::{convert, Error, Result};

/// The [`Backend`] on an ONNX Runtime session.
///
/// A model that takes the engine's frame tensor as it is (the default `[preprocess]`,
/// any input size) is fed it directly: one frame without a copy, several copied into
/// one batch. Any other model has its input written here, on the inference thread
/// ([`preprocess::write_input`]), and its outputs read back through the frame's
/// [`Placement`]. A graph with a fixed batch size runs the frames in chunks of that
/// size, the last one padded with copies of its last frame.
pub struct OrtBackend {
    model: LoadedModel,
    /// Batch input, reused (grows only when the sizes do).
    batch_image: Vec<f32>,
    sigma: Vec<f32>,
    scratch: Scratch,
}

impl OrtBackend {
    pub fn new(model: LoadedModel) -> Self {
        OrtBackend {
            model,
            batch_image: Vec::new(),
            sigma: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    pub fn provider(&self) -> Provider {
        self.model.provider
    }

    /// Runs one chunk of frames as a batch of `rows` (at least the frames; the rest
    /// repeat the last frame).
    fn run_chunk(&mut self, batch: &mut [Pooled], rows: usize) -> Result<()> {
        let n = batch.len();
        let spec = &self.model.spec;
        let pre = &spec.preprocess;
        let fixed = self.model.graph.fixed_size;
        let (pw, ph) = (batch[0].pw, batch[0].ph);
        let (iw, ih) = fixed.unwrap_or((pw, ph));
        for t in batch.iter_mut() {
            t.placement = match fixed {
                Some(size) => Placement::fixed(t.width, t.height, size, pre.resize),
                None => Placement::padded(t.pw, t.ph),
            };
        }
        let per = 3 * iw * ih;
        let direct = fixed.is_none() && pre.feeds_frame_tensor();
        let shape = pre.layout.shape(rows, iw, ih);
        let image: &[f32] = if direct && rows == 1 {
            // One frame: the frame's own tensor, no copy.
            &batch[0].image[..per]
        } else {
            self.batch_image.resize(rows * per, 0.0);
            for (dst, t) in self.batch_image.chunks_exact_mut(per).zip(batch.iter()) {
                if direct {
                    dst.copy_from_slice(&t.image[..per]);
                } else {
                    preprocess::write_input(pre, &t.placement, &t.image, (t.pw, t.ph), dst, &mut self.scratch);
                }
            }
            for i in n..rows {
                self.batch_image.copy_within((n - 1) * per..n * per, i * per);
            }
            &self.batch_image
        };
        let image = TensorRef::from_array_view((shape, image))?;
        self.sigma.clear();
        self.sigma.extend((0..rows).map(|i| batch[i.min(n - 1)].sigma));
        let sigma = TensorRef::from_array_view(([rows, 1, 1, 1], &self.sigma[..]))?;
        let outputs = match &spec.sigma_input {
            Some(name) => self.model.session.run(ort::inputs![
                spec.image_input.as_str() => image,
                name.as_str() => sigma,
            ])?,
            None => self
                .model
                .session
                .run(ort::inputs![spec.image_input.as_str() => image])?,
        };

        let bad_shape = |what: &str, got: &[i64]| Error::Contract {
            path: spec.path.clone(),
            message: format!("output '{what}' has shape {got:?} for an input of {shape:?}"),
        };
        let scratch = &mut self.scratch;
        if let Some(name) = &spec.denoised_output {
            let (s, data) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            if **s != shape.map(|d| d as i64) {
                return Err(bad_shape(name, s));
            }
            for (src, t) in data.chunks_exact(per).zip(batch.iter_mut()) {
                let (frame, place) = ((t.pw, t.ph), t.placement);
                t.faults.nonfinite_denoised = if direct {
                    convert::copy_finite(&mut t.image[..per], src)
                } else {
                    preprocess::read_denoised(pre, &place, src, &mut t.image, frame, scratch)
                };
                t.denoised = true;
            }
        }
        if let Some(name) = &spec.labels_output {
            let value = &outputs[name.as_str()];
            let classes = spec.classes.len();
            let s = value.shape();
            if s.len() != 3 || s[0] != rows as i64 || s[1] <= 0 || s[2] <= 0 {
                return Err(bad_shape(name, s));
            }
            let (lh, lw) = (s[1] as usize, s[2] as usize);
            let same_grid = fixed.is_none() && (lw, lh) == (pw, ph);
            match self.model.graph.labels_elem {
                ElemType::U8 => {
                    let (_, data) = value.try_extract_tensor::<u8>()?;
                    for (src, t) in data.chunks_exact(lh * lw).zip(batch.iter_mut()) {
                        t.faults.bad_labels = if same_grid {
                            convert::copy_class_ids(&mut t.labels[..pw * ph], src, classes)
                        } else {
                            labels_back(src, (lw, lh), classes, t, scratch)
                        };
                    }
                }
                ElemType::I32 => {
                    let (_, data) = value.try_extract_tensor::<i32>()?;
                    for (src, t) in data.chunks_exact(lh * lw).zip(batch.iter_mut()) {
                        t.faults.bad_labels = labels_back(src, (lw, lh), classes, t, scratch);
                    }
                }
                _ => {
                    let (_, data) = value.try_extract_tensor::<i64>()?;
                    for (src, t) in data.chunks_exact(lh * lw).zip(batch.iter_mut()) {
                        t.faults.bad_labels = labels_back(src, (lw, lh), classes, t, scratch);
                    }
                }
            }
            for t in batch.iter_mut() {
                t.segmentation = Segmentation::Labels;
            }
        }
        if let Some(name) = &spec.logits_output {
            let (s, data) = outputs[name.as_str()].try_extract_tensor::<f32>()?;
            let ok = s.len() == 4 && s[0] == rows as i64 && s[1] as usize == spec.classes.len() && s[2] > 0 && s[3] > 0;
            if !ok {
                return Err(bad_shape(name, s));
            }
            let (c, lh, lw) = (s[1] as usize, s[2] as usize, s[3] as usize);
            let len = c * lh * lw;
            for (src, t) in data.chunks_exact(len).zip(batch.iter_mut()) {
                t.logits.resize(len, 0.0);
                t.faults.nan_logits = convert::copy_logits(&mut t.logits, src);
                t.segmentation = Segmentation::Logits {
                    classes: c,
                    h: lh,
                    w: lw,
                };
            }
        }
        Ok(())
    }
}

/// Reads one frame's labels (`[lh, lw]`) back into its class map over the frame grid.
fn labels_back<T: LabelValue>(
    src: &[T],
    size: (usize, usize),
    classes: usize,
    t: &mut Tensors,
    scratch: &mut Scratch,
) -> usize {
    let place = t.placement;
    preprocess::read_labels(src, size, &place, classes, place.grid, &mut t.labels, t.pw, scratch)
}

impl Backend for OrtBackend {
    fn name(&self) -> String {
        self.model.provider.name().to_string()
    }

    fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.model.graph.fixed_batch {
            Some(rows) => {
                for chunk in batch.chunks_mut(rows.max(1)) {
                    self.run_chunk(chunk, rows.max(1))?;
                }
                Ok(())
            }
            None => {
                let rows = batch.len();
                self.run_chunk(batch, rows)
            }
        }
    }
}

/// The timing of a [`bare_loop`].
#[derive(Clone, Debug, Default)]
pub struct BareLoopTiming {
    /// Frames timed (after the warm-up): a whole number of batches.
    pub frames: usize,
    /// Wall time of the timed batches (inference only).
    pub elapsed: Duration,
    /// Each timed batch's time.
    pub batch_times: Vec<Duration>,
}

impl BareLoopTiming {
    /// Frames per second over the timed batches (0 when nothing was timed).
    pub fn fps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if self.frames == 0 || s <= 0.0 {
            0.0
        } else {
            self.frames as f64 / s
        }
    }
}

/// Copies a frame's model input (sizes, padded planar image, sigma) into `dst` and
/// clears its results, as the queue's pre-processing would leave it.
fn load_input(dst: &mut Tensors, src: &Tensors) {
    dst.width = src.width;
    dst.height = src.height;
    dst.pw = src.pw;
    dst.ph = src.ph;
    dst.image.clear();
    dst.image.extend_from_slice(&src.image);
    dst.labels.resize(src.pw * src.ph, 0);
    dst.denoised = false;
    dst.segmentation = Segmentation::None;
    dst.sigma_estimate = src.sigma_estimate;
    dst.sigma = src.sigma;
    dst.faults = Default::default();
    dst.placement = src.placement;
}

/// A bare inference loop, the yardstick of the element's frame queue: runs `backend`
/// on batches of `batch` frames taken in turn from `inputs` (prepared tensors: sizes,
/// padded planar `image`, `sigma`), first `warmup` frames untimed, then at least
/// `frames` frames timed (both rounded up to whole batches). Before every run each
/// frame's input is restored from `inputs`, outside the timing (a backend replaces
/// `image` with the denoised output), so every run sees the same tensors.
pub fn bare_loop(
    backend: &mut dyn Backend,
    inputs: &[Tensors],
    batch: usize,
    warmup: usize,
    frames: usize,
) -> Result<BareLoopTiming> {
    if inputs.is_empty() {
        return Err(Error::Invalid("bare loop: no input frames".into()));
    }
    let batch = batch.max(1);
    let mut slots: Vec<Pooled> = (0..batch).map(|_| Pooled::standalone(Tensors::default())).collect();
    let mut next = 0usize;
    let mut timing = BareLoopTiming::default();
    let warmup_batches = warmup.div_ceil(batch);
    let timed_batches = frames.div_ceil(batch);
    for i in 0..warmup_batches + timed_batches {
        for slot in slots.iter_mut() {
            load_input(slot, &inputs[next % inputs.len()]);
            next += 1;
        }
        let t0 = Instant::now();
        backend.run(&mut slots)?;
        let dt = t0.elapsed();
        if i >= warmup_batches {
            timing.frames += batch;
            timing.elapsed += dt;
            timing.batch_times.push(dt);
        }
    }
    Ok(timing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replaces the image with 1 - image, like tests/models/joint.onnx, and records
    /// what it saw.
    struct Invert {
        seen: Vec<(f32, f32)>,
        sizes: Vec<usize>,
    }

    impl Backend for Invert {
        fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
            self.sizes.push(batch.len());
            for t in batch.iter_mut() {
                self.seen.push((t.image[0], t.sigma));
                t.image.iter_mut().for_each(|v| *v = 1.0 - *v);
                t.denoised = true;
            }
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        }
    }

    fn input(value: f32, sigma: f32) -> Tensors {
        let mut t = Tensors::default();
        t.set_size(5, 3, 4);
        t.image.fill(value);
        t.sigma = sigma;
        t
    }

    #[test]
    fn bare_loop_restores_inputs_and_counts_whole_batches() {
        let inputs = [input(0.25, 0.1), input(0.5, 0.2), input(0.75, 0.3)];
        let mut b = Invert {
            seen: Vec::new(),
            sizes: Vec::new(),
        };
        let timing = bare_loop(&mut b, &inputs, 2, 3, 5).unwrap();
        // 2 warm-up batches (3 frames rounded up) and 3 timed ones (5 rounded up).
        assert_eq!(b.sizes, vec![2; 5]);
        assert_eq!(timing.frames, 6);
        assert_eq!(timing.batch_times.len(), 3);
        assert!(timing.elapsed >= Duration::from_millis(6));
        assert!(timing.fps() > 0.0);
        // Inputs cycle and are never the previous run's output.
        let want: Vec<(f32, f32)> = (0..10).map(|i| (inputs[i % 3].image[0], inputs[i % 3].sigma)).collect();
        assert_eq!(b.seen, want);
        assert_eq!(inputs[0].image[0], 0.25);
    }

    #[test]
    fn bare_loop_needs_inputs() {
        let mut b = Invert {
            seen: Vec::new(),
            sizes: Vec::new(),
        };
        assert!(bare_loop(&mut b, &[], 1, 0, 1).is_err());
        assert_eq!(bare_loop(&mut b, &[input(0.0, 0.0)], 1, 0, 0).unwrap().fps(), 0.0);
    }
}
