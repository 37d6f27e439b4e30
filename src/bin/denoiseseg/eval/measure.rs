//! The measurements: PSNR, SSIM and the class maps' confusion matrix, summed over the
//! frame sets of one sigma on a thread of their own, and one sigma's results.
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};

use denoiseseg::metrics::{psnr_u8, ssim_rgb_u8, ConfusionMatrix};

use crate::common::{Ending, RgbFrame};

use super::inputs::Labels;

/// PSNR given to a frame identical to the reference.
const PSNR_CAP: f64 = 100.0;

/// Sums over the frames of one sigma.
pub(super) struct Acc {
    pub(super) frames: usize,
    pub(super) psnr_noisy: f64,
    pub(super) psnr_denoised: f64,
    pub(super) ssim_noisy: f64,
    pub(super) ssim_denoised: f64,
    pub(super) confusion: Option<ConfusionMatrix>,
    pub(super) sigma_used: f64,
    pub(super) first: Option<Instant>,
    pub(super) last: Option<Instant>,
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    psnr_u8(a, b).min(PSNR_CAP)
}

/// One set of frames as the appsinks gave it: clean, noisy, denoised.
pub(super) struct Set {
    pub(super) frames: Vec<RgbFrame>,
    pub(super) sigma_used: f64,
    pub(super) at: Instant,
}

pub(super) fn metrics_thread(rx: mpsc::Receiver<Set>, labels: Option<Arc<Labels>>, classes: usize) -> Result<Acc> {
    let mut acc = Acc {
        frames: 0,
        psnr_noisy: 0.0,
        psnr_denoised: 0.0,
        ssim_noisy: 0.0,
        ssim_denoised: 0.0,
        confusion: labels.as_ref().map(|_| ConfusionMatrix::new(classes)),
        sigma_used: 0.0,
        first: None,
        last: None,
    };
    for set in rx {
        let i = acc.frames;
        let [clean, noisy, den] = &set.frames[..] else {
            bail!("internal: a frame set of {} frames", set.frames.len());
        };
        let (w, h) = (clean.width, clean.height);
        if (noisy.width, noisy.height) != (w, h) || (den.width, den.height) != (w, h) {
            bail!(
                "frame {}: the denoised frame is {}x{}, the clean one {w}x{h}",
                i + 1,
                den.width,
                den.height
            );
        }
        acc.psnr_noisy += psnr(&noisy.data, &clean.data);
        acc.psnr_denoised += psnr(&den.data, &clean.data);
        acc.ssim_noisy += ssim_rgb_u8(&noisy.data, &clean.data, w, h);
        acc.ssim_denoised += ssim_rgb_u8(&den.data, &clean.data, w, h);
        if let (Some(labels), Some(cm)) = (&labels, acc.confusion.as_mut()) {
            let truth = labels.get(i)?;
            if (truth.width, truth.height) != (w, h) {
                bail!(
                    "label map {} is {}x{}, but its frame is {w}x{h}",
                    i + 1,
                    truth.width,
                    truth.height
                );
            }
            let pred = den.mask.as_ref().ok_or_else(|| {
                anyhow!(
                    "frame {}: the element gave no class map (does the model segment?)",
                    i + 1
                )
            })?;
            cm.update(pred, &truth.data);
        }
        acc.sigma_used += set.sigma_used;
        acc.first.get_or_insert(set.at);
        acc.last = Some(set.at);
        acc.frames += 1;
    }
    Ok(acc)
}

/// The result of one sigma.
pub(super) struct SigmaResult {
    pub(super) sigma: f64,
    pub(super) frames: usize,
    pub(super) psnr_noisy: f64,
    pub(super) psnr_denoised: f64,
    pub(super) ssim_noisy: f64,
    pub(super) ssim_denoised: f64,
    pub(super) miou: Option<f64>,
    pub(super) pixel_accuracy: Option<f64>,
    pub(super) iou_per_class: Option<Vec<Option<f64>>>,
    pub(super) sigma_used: f64,
    pub(super) fps: f64,
    pub(super) ending: Ending,
}

pub(super) fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_is_capped() {
        assert_eq!(psnr(&[1, 2, 3], &[1, 2, 3]), PSNR_CAP);
        assert!(psnr(&[0, 0, 0], &[255, 255, 255]) < 1.0);
    }
}
