//! The inference backend on an ONNX Runtime session, and the bare inference loop
//! that is its yardstick.
use std::time::{Duration, Instant};

use super::binding::Bindings;
use super::session::{load_model, BuildReport, LoadedModel, Provider, SessionOptions};
use crate::backend::Backend;
use crate::model::{ElemType, GraphInfo, ModelSpec};
use crate::preprocess::{self, LabelValue, Placement, Scratch};
use crate::tensors::{Pooled, Segmentation, Tensors};
use crate::{convert, Error, Result};

/// The [`Backend`] on an ONNX Runtime session.
///
/// Runs go through the session's I/O binding ([`Bindings`]): each input shape has its
/// preallocated input, sigma and output tensors (page-locked host memory on CUDA and
/// TensorRT), so a run allocates no tensor. The frames are written into the bound
/// input, their one copy: as they are for a model that takes the engine's frame tensor
/// (the default `[preprocess]`, any input size), through [`preprocess::write_input`]
/// for any other; the outputs are read back through the frame's [`Placement`]. A
/// graph with a fixed batch size runs the frames in chunks of that size, the last one
/// padded with copies of its last frame.
pub struct OrtBackend {
    model: LoadedModel,
    bindings: Bindings,
    scratch: Scratch,
}

impl OrtBackend {
    pub fn new(mut model: LoadedModel) -> Self {
        let gpu = (model.provider != Provider::Cpu).then_some(model.options.device_id);
        let (bindings, warning) = Bindings::new(&model.session, gpu);
        model.warnings.extend(warning);
        OrtBackend {
            model,
            bindings,
            scratch: Scratch::default(),
        }
    }

    pub fn provider(&self) -> Provider {
        self.model.provider
    }

    /// What the model's load said that the user should know (an `auto` fallback, no
    /// page-locked memory).
    pub fn warnings(&self) -> &[String] {
        &self.model.warnings
    }

    /// How the session's build went (time, TensorRT engine cache).
    pub fn build_report(&self) -> &BuildReport {
        &self.model.build
    }

    /// Runs one chunk of frames as a batch of `rows` (at least the frames; the rest
    /// repeat the last frame).
    fn run_chunk(&mut self, batch: &mut [Pooled], rows: usize) -> Result<()> {
        let OrtBackend {
            model,
            bindings,
            scratch,
        } = self;
        let n = batch.len();
        let spec = &model.spec;
        let pre = &spec.preprocess;
        let fixed = model.graph.fixed_size;
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
        let pinned = bindings.pinned();
        let slot = bindings.slot(&model.session, spec, shape)?;
        {
            let (_, image) = slot.image.try_extract_tensor_mut::<f32>()?;
            for (dst, t) in image.chunks_exact_mut(per).zip(batch.iter()) {
                if direct {
                    dst.copy_from_slice(&t.image[..per]);
                } else {
                    preprocess::write_input(pre, &t.placement, &t.image, (t.pw, t.ph), dst, scratch);
                }
            }
            for i in n..rows {
                image.copy_within((n - 1) * per..n * per, i * per);
            }
        }
        if let Some(sigma) = slot.sigma.as_mut() {
            let (_, sigma) = sigma.try_extract_tensor_mut::<f32>()?;
            for (i, s) in sigma.iter_mut().enumerate() {
                *s = batch[i.min(n - 1)].sigma;
            }
        }
        let outputs = model.session.run_binding(&slot.binding)?;
        if pinned {
            slot.binding.synchronize_outputs()?;
        }
        let to_bind = slot.outputs_to_bind(&outputs);
        read_outputs(spec, &model.graph, &outputs, batch, rows, shape, direct, scratch)?;
        drop(outputs);
        if let Some(shapes) = to_bind {
            bindings.bind_outputs(shape, shapes)?;
        }
        Ok(())
    }
}

/// Reads a run's outputs of a batch of `rows` of input `shape` back into its frames
/// (`direct`: the model's input was the frame tensor itself).
#[allow(clippy::too_many_arguments)]
fn read_outputs(
    spec: &ModelSpec,
    graph: &GraphInfo,
    outputs: &ort::session::SessionOutputs<'_>,
    batch: &mut [Pooled],
    rows: usize,
    shape: [usize; 4],
    direct: bool,
    scratch: &mut Scratch,
) -> Result<()> {
    let pre = &spec.preprocess;
    let fixed = graph.fixed_size;
    let (pw, ph) = (batch[0].pw, batch[0].ph);
    let per = shape.iter().skip(1).product::<usize>();
    let bad_shape = |what: &str, got: &[i64]| Error::Contract {
        path: spec.path.clone(),
        message: format!("output '{what}' has shape {got:?} for an input of {shape:?}"),
    };
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
        match graph.labels_elem {
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

    fn engine_cache(&self) -> &'static str {
        self.model.build.cache.name()
    }

    /// A new session on the provider in use (a TensorRT engine comes from the cache
    /// the first session wrote), with its own bindings.
    fn replicate(&self) -> Result<Box<dyn Backend>> {
        let m = &self.model;
        let opts = SessionOptions {
            provider: m.provider,
            ..m.options.clone()
        };
        Ok(Box::new(OrtBackend::new(load_model(&m.env, &m.spec, &opts)?)))
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
/// `image` with the denoised output), so every run sees the same tensors. `stop` is
/// asked before each run: when it says yes the loop ends with [`Error::Interrupted`].
pub fn bare_loop(
    backend: &mut dyn Backend,
    inputs: &[Tensors],
    batch: usize,
    warmup: usize,
    frames: usize,
    stop: &dyn Fn() -> bool,
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
        if stop() {
            return Err(Error::Interrupted);
        }
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
        let timing = bare_loop(&mut b, &inputs, 2, 3, 5, &|| false).unwrap();
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
    fn bare_loop_needs_inputs_and_stops_when_asked() {
        let mut b = Invert {
            seen: Vec::new(),
            sizes: Vec::new(),
        };
        assert!(bare_loop(&mut b, &[], 1, 0, 1, &|| false).is_err());
        assert_eq!(
            bare_loop(&mut b, &[input(0.0, 0.0)], 1, 0, 0, &|| false).unwrap().fps(),
            0.0
        );
        let interrupted = bare_loop(&mut b, &[input(0.0, 0.0)], 1, 0, 5, &|| true);
        assert!(matches!(interrupted, Err(Error::Interrupted)), "{interrupted:?}");
    }

    /// An [`OrtBackend`] on the CPU for a model of tests/models.
    fn test_backend(name: &str) -> OrtBackend {
        let candidates = crate::runtime::library_candidates(None, None);
        let (env, _) = crate::runtime::environment(&candidates).expect("ONNX Runtime (make setup)");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/models")
            .join(name);
        let spec = crate::model::ModelSpec::load(&path).unwrap();
        let opts = crate::runtime::SessionOptions {
            provider: Provider::Cpu,
            intra_threads: 1,
            ..Default::default()
        };
        OrtBackend::new(crate::runtime::load_model(&env, &spec, &opts).unwrap())
    }

    fn frames(values: &[f32], sigma: f32) -> Vec<Pooled> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let mut t = input(v, sigma);
                // A distinct value per sample, so a mix-up of frames or rows shows.
                for (j, x) in t.image.iter_mut().enumerate() {
                    *x = (v + 0.001 * ((i * 7 + j) % 13) as f32).min(1.0);
                }
                Pooled::standalone(t)
            })
            .collect()
    }

    #[test]
    fn bound_runs_give_the_models_results_for_every_batch_shape() {
        let mut b = test_backend("joint.onnx");
        // A batch of 2, then 1 (another bound shape), then 2 again (reused, outputs
        // preallocated by then), then 3.
        for values in [&[0.2f32, 0.7][..], &[0.9], &[0.3, 0.6], &[0.1, 0.5, 0.8]] {
            let mut batch = frames(values, 0.0);
            let inputs: Vec<Vec<f32>> = batch.iter().map(|t| t.image.clone()).collect();
            b.run(&mut batch).unwrap();
            for (t, x) in batch.iter().zip(&inputs) {
                assert!(t.denoised);
                let want: Vec<f32> = x.iter().map(|v| 1.0 - v).collect();
                assert_eq!(t.image, want, "denoised = 1 - image, bit for bit");
                assert!(t.has_labels());
                // Class = argmax over R, G, B of the pixel (first index on ties).
                let plane = t.pw * t.ph;
                for p in 0..plane {
                    let rgb = [x[p], x[plane + p], x[2 * plane + p]];
                    let best = (0..3).fold(0, |b, c| if rgb[c] > rgb[b] { c } else { b });
                    assert_eq!(t.labels[p] as usize, best, "pixel {p}");
                }
            }
        }
        let mut shapes = b.bindings.bound_shapes();
        shapes.sort();
        assert_eq!(
            shapes,
            vec![([1, 3, 4, 8], true), ([2, 3, 4, 8], true), ([3, 3, 4, 8], true)],
            "one binding per batch shape, outputs preallocated after its first run"
        );
    }

    #[test]
    fn bound_runs_feed_sigma_and_map_fixed_size_outputs_back() {
        let mut b = test_backend("denoise_sigma.onnx");
        for _ in 0..2 {
            let mut batch = frames(&[0.25, 0.5], 0.125);
            b.run(&mut batch).unwrap();
            for t in batch.iter() {
                assert!(t.image.iter().all(|&v| v >= 0.375 - 1e-6), "sigma added");
            }
        }
        // A graph of a fixed size and batch 1: frames run one by one, outputs mapped back.
        let mut b = test_backend("fixed_stretch.onnx");
        for _ in 0..2 {
            let mut batch = frames(&[0.2, 0.4, 0.6], 0.0);
            b.run(&mut batch).unwrap();
            for t in batch.iter() {
                assert!(t.denoised && t.has_labels());
            }
        }
        assert_eq!(b.bindings.bound_shapes(), vec![([1, 3, 32, 64], true)]);
    }
}
