//! The engine's model-specific steps on every frame, which the frame queue runs at
//! fixed points around the element's own pre- and post-processing
//! ([`queue::Stages`](crate::queue::Stages)):
//!
//! - pre-processing workers: the per-frame noise estimate (each worker has its own
//!   [`SigmaEstimator`] and its buffers), when the model takes a sigma and the noise
//!   level is left to the estimate;
//! - inference thread, before each batch: the sigma policy, the sigma fed to the model:
//!   the fixed noise level, or the per-frame estimate smoothed over frames
//!   ([`SigmaSmoother`], restarted after a flush);
//! - post-processing workers: logits -> labels (argmax at the padded input size).
use crate::convert;
use crate::noise::{SigmaEstimator, SigmaSmoother};
use crate::queue::{BatchStage, PreStage, Stages, Tunables};
use crate::tensors::{Pooled, Segmentation, Tensors};

/// How fast the smoothed noise estimate follows the per-frame one.
const SIGMA_SMOOTHING: f32 = 0.2;

/// The model's stages, for the queue.
#[derive(Debug, Clone, Copy)]
pub struct ModelStages {
    /// Whether the model takes a sigma input (estimation is skipped otherwise).
    needs_sigma: bool,
}

impl ModelStages {
    pub fn new(needs_sigma: bool) -> Self {
        ModelStages { needs_sigma }
    }
}

impl Stages for ModelStages {
    fn pre_stage(&self) -> Box<dyn PreStage> {
        Box::new(EstimateSigma {
            needs_sigma: self.needs_sigma,
            estimator: SigmaEstimator::new(),
        })
    }

    fn batch_stage(&self) -> Box<dyn BatchStage> {
        Box::new(SigmaPolicy {
            smoother: SigmaSmoother::new(SIGMA_SMOOTHING),
        })
    }

    fn post_stage(&self, t: &mut Tensors) {
        labels_from_logits(t);
    }
}

/// Pre-processing: the per-frame noise estimate.
struct EstimateSigma {
    needs_sigma: bool,
    estimator: SigmaEstimator,
}

impl PreStage for EstimateSigma {
    fn run(&mut self, t: &mut Tensors, tunables: &Tunables) {
        if self.needs_sigma && tunables.noise_level() < 0.0 {
            t.sigma_estimate = self.estimator.estimate(&t.image, t.width, t.height, t.pw);
        }
    }
}

/// Inference thread: the noise level fed to the model, fixed by the property, or the
/// smoothed per-frame estimate.
struct SigmaPolicy {
    smoother: SigmaSmoother,
}

impl BatchStage for SigmaPolicy {
    fn reset(&mut self) {
        self.smoother.reset();
    }

    fn run(&mut self, batch: &mut [Pooled], tunables: &Tunables) {
        let fixed = tunables.noise_level();
        for t in batch.iter_mut() {
            t.sigma = if fixed >= 0.0 {
                fixed
            } else if t.sigma_estimate >= 0.0 {
                self.smoother.update(t.sigma_estimate)
            } else {
                0.0
            };
        }
    }
}

/// Post-processing: a model that gives logits gets its class map here, through the
/// frame's placement in the model input.
fn labels_from_logits(t: &mut Tensors) {
    if let Segmentation::Logits { classes, h, w } = t.segmentation {
        if classes > 0 {
            let maps = t.placement.to_output((w, h));
            convert::logits_to_labels_mapped(
                &t.logits,
                classes,
                (h, w),
                maps,
                t.pw,
                (t.width, t.height),
                &mut t.labels,
            );
            t.segmentation = Segmentation::Labels;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The model's stages on a real queue, with a fake processor and a fake backend
    //! that logs the sigmas it is fed (no GStreamer, no ONNX Runtime).
    use super::*;
    use crate::backend::{Backend, BackendFactory};
    use crate::noise::{add_noise_interleaved, NoiseParams};
    use crate::queue::support::{self, config, factory_of, spawn_receiver, tunables};
    use crate::queue::{FrameQueue, Output, Processor, QueueConfig, Recv, Submitted};
    use crate::Result;
    use crossbeam_channel::Receiver;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::Duration;

    /// The most any awaited step may take before the test fails.
    const WAIT: Duration = Duration::from_secs(5);

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[derive(Debug, Clone, PartialEq)]
    struct TestFrame {
        id: u64,
        width: usize,
        height: usize,
        /// Interleaved 8-bit RGB `width` x `height`; without it the image is filled with `id`.
        rgb: Option<Arc<Vec<u8>>>,
    }

    fn frame(id: u64) -> TestFrame {
        TestFrame {
            id,
            width: 8,
            height: 8,
            rgb: None,
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Out {
        id: u64,
        sigma: f32,
        sigma_estimate: f32,
        padded: (usize, usize),
    }

    struct TestProc {
        size_multiple: usize,
    }

    impl Processor for TestProc {
        type Frame = TestFrame;
        type Output = Out;

        fn pre(&self, f: &mut TestFrame, t: &mut Tensors) -> Result<()> {
            t.set_size(f.width, f.height, self.size_multiple);
            match f.rgb.take() {
                Some(rgb) => {
                    let (w, h, pw, ph) = (t.width, t.height, t.pw, t.ph);
                    t.image.fill(0.0);
                    for c in 0..3 {
                        for y in 0..h {
                            for x in 0..w {
                                t.image[c * ph * pw + y * pw + x] = rgb[(y * w + x) * 3 + c] as f32 / 255.0;
                            }
                        }
                    }
                }
                None => t.image.fill(f.id as f32),
            }
            Ok(())
        }

        fn post(&self, f: TestFrame, t: &mut Tensors) -> Result<Out> {
            Ok(Out {
                id: f.id,
                sigma: t.sigma,
                sigma_estimate: t.sigma_estimate,
                padded: (t.pw, t.ph),
            })
        }
    }

    /// What the backend saw in one `run`.
    #[derive(Debug, Clone)]
    struct BatchLog {
        sigmas: Vec<f32>,
    }

    type Log = Arc<Mutex<Vec<BatchLog>>>;

    /// Logs the sigmas of each batch and marks the frames denoised.
    #[derive(Default)]
    struct FakeBackend {
        log: Log,
    }

    impl Backend for FakeBackend {
        fn run(&mut self, batch: &mut [Pooled]) -> Result<()> {
            lock(&self.log).push(BatchLog {
                sigmas: batch.iter().map(|t| t.sigma).collect(),
            });
            for t in batch.iter_mut() {
                t.denoised = true;
            }
            Ok(())
        }
    }

    type R = Recv<Out, u64>;

    type Guard = support::Guard<TestProc, u64>;

    fn proc_(size_multiple: usize) -> TestProc {
        TestProc { size_multiple }
    }

    /// A queue with the model's stages; `needs_sigma`: the model takes a sigma input.
    fn start(cfg: QueueConfig, tun: Arc<Tunables>, p: TestProc, needs_sigma: bool, factory: BackendFactory) -> Guard {
        let stages = Arc::new(ModelStages::new(needs_sigma));
        support::Guard(Arc::new(
            FrameQueue::new(cfg, tun, Arc::new(p), stages, factory).expect("queue starts"),
        ))
    }

    fn next_frame(rx: &Receiver<R>) -> (Out, bool) {
        match rx.recv_timeout(WAIT).expect("recv gave nothing in time") {
            Recv::Item(Output::Frame { out, after_drop, .. }) => (out, after_drop),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    // ---------------------------------------------------------------------
    // Noise level
    // ---------------------------------------------------------------------

    #[test]
    fn fixed_noise_level_is_the_sigma_the_backend_sees() {
        let log = Log::default();
        let backend = FakeBackend { log: log.clone() };
        let cfg = config(2, 4, 2);
        let q = start(
            cfg,
            tunables(false, 0.1, Duration::from_millis(2)),
            proc_(8),
            true,
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        for i in 0..6 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 0..6 {
            let (out, _) = next_frame(&rx);
            assert_eq!((out.id, out.sigma), (i, 0.1));
            assert_eq!(out.sigma_estimate, -1.0, "no estimate with a fixed level");
        }
        assert!(lock(&log).iter().flat_map(|b| b.sigmas.iter()).all(|&s| s == 0.1));
        assert!((q.stats().snapshot().sigma - 25.5).abs() < 1e-3);

        // The level is a tunable: later frames see the new value.
        q.tunables().set_noise_level(0.05);
        lock(&log).clear();
        for i in 6..9 {
            assert_eq!(q.submit(frame(i)), Ok(Submitted::Queued));
        }
        for i in 6..9 {
            let (out, _) = next_frame(&rx);
            assert_eq!((out.id, out.sigma), (i, 0.05));
        }
        assert!(lock(&log).iter().flat_map(|b| b.sigmas.iter()).all(|&s| s == 0.05));
    }

    #[test]
    fn noise_level_minus_one_feeds_the_estimated_sigma_to_the_backend() {
        let log = Log::default();
        let backend = FakeBackend { log: log.clone() };
        let mut cfg = config(2, 4, 2);
        cfg.size_multiple = 32;
        let q = start(
            cfg,
            tunables(false, -1.0, Duration::from_millis(2)),
            proc_(32),
            true,
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        // Flat grey with Gaussian noise of 20 (8-bit units); 120x100 pads to 128x128.
        let (w, h, sigma8) = (120, 100, 20.0f32);
        for i in 0..6u64 {
            let mut rgb = vec![128u8; w * h * 3];
            add_noise_interleaved(
                &mut rgb,
                w,
                h,
                w * 3,
                3,
                &[0, 1, 2],
                &NoiseParams::gaussian(sigma8),
                7,
                i,
            );
            let f = TestFrame {
                id: i,
                width: w,
                height: h,
                rgb: Some(Arc::new(rgb)),
            };
            assert_eq!(q.submit(f), Ok(Submitted::Queued));
        }
        let want = sigma8 / 255.0;
        let close = |s: f32| (s / want - 1.0).abs() < 0.1;
        for i in 0..6 {
            let (out, _) = next_frame(&rx);
            assert_eq!((out.id, out.padded), (i, (128, 128)));
            assert!(
                close(out.sigma_estimate),
                "frame {i}: estimate {}",
                out.sigma_estimate * 255.0
            );
            assert!(close(out.sigma), "frame {i}: sigma {}", out.sigma * 255.0);
        }
        let sigmas: Vec<f32> = lock(&log).iter().flat_map(|b| b.sigmas.clone()).collect();
        assert_eq!(sigmas.len(), 6);
        assert!(sigmas.iter().all(|&s| close(s)), "backend saw {sigmas:?}");
        let stats_sigma = q.stats().snapshot().sigma;
        assert!((stats_sigma / sigma8 - 1.0).abs() < 0.1, "stats sigma {stats_sigma}");
    }

    #[test]
    fn without_a_sigma_input_the_noise_level_is_neither_estimated_nor_fed() {
        let log = Log::default();
        let backend = FakeBackend { log: log.clone() };
        let q = start(
            config(1, 4, 1),
            tunables(false, -1.0, Duration::ZERO),
            proc_(8),
            false,
            factory_of(backend),
        );
        let rx = spawn_receiver(q.arc());
        assert_eq!(q.submit(frame(0)), Ok(Submitted::Queued));
        let (out, _) = next_frame(&rx);
        assert_eq!((out.sigma, out.sigma_estimate), (0.0, -1.0));
        assert_eq!(lock(&log)[0].sigmas, vec![0.0]);
    }
}
