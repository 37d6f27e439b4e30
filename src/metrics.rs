//! Image-quality and segmentation metrics: PSNR and SSIM of 8-bit frames, and a
//! confusion matrix giving per-class IoU, mIoU and pixel accuracy (the Cityscapes
//! conventions: label 255 is ignored, classes absent from both prediction and truth
//! are left out of the mean).

/// Peak signal-to-noise ratio of two 8-bit signals of the same length, in dB, with
/// peak 255: `10 log10(255² / MSE)`. Identical inputs (and empty ones) give
/// `f64::INFINITY`.
///
/// # Panics
/// If the lengths differ.
pub fn psnr_u8(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "psnr_u8: inputs differ in length");
    let sse: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x.abs_diff(y) as u64;
            d * d
        })
        .sum();
    if sse == 0 {
        return f64::INFINITY;
    }
    let mse = sse as f64 / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse).log10()
}

/// Side of the SSIM window.
const SSIM_WIN: usize = 11;
/// Standard deviation of the SSIM window's Gaussian.
const SSIM_SIGMA: f64 = 1.5;
const SSIM_C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
const SSIM_C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);

/// The normalized 1-D Gaussian of the SSIM window (the 2-D window is its outer
/// product).
fn ssim_kernel() -> [f64; SSIM_WIN] {
    let mut k = [0.0; SSIM_WIN];
    let half = (SSIM_WIN / 2) as f64;
    for (i, v) in k.iter_mut().enumerate() {
        let d = i as f64 - half;
        *v = (-d * d / (2.0 * SSIM_SIGMA * SSIM_SIGMA)).exp();
    }
    let sum: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k
}

/// Structural similarity of two packed RGB frames (3 bytes per pixel, no row
/// padding), as Wang et al. (2004) define it: an 11×11 Gaussian window of sigma
/// 1.5, K1 = 0.01, K2 = 0.03, L = 255, the SSIM map over every position where the
/// window fits wholly inside the frame ("valid"), averaged, per channel, and the
/// three channel means averaged. A frame smaller than the window in either
/// dimension is scored as one window of uniform weights over the whole frame.
///
/// # Panics
/// If either input is not `width * height * 3` bytes.
pub fn ssim_rgb_u8(a: &[u8], b: &[u8], width: usize, height: usize) -> f64 {
    let n = width * height;
    assert_eq!(a.len(), n * 3, "ssim_rgb_u8: first frame is not {width}x{height} RGB");
    assert_eq!(b.len(), n * 3, "ssim_rgb_u8: second frame is not {width}x{height} RGB");
    if n == 0 {
        return 1.0;
    }
    let mut sum = 0.0;
    for c in 0..3 {
        let x: Vec<f64> = a.iter().skip(c).step_by(3).map(|&v| v as f64).collect();
        let y: Vec<f64> = b.iter().skip(c).step_by(3).map(|&v| v as f64).collect();
        sum += if width < SSIM_WIN || height < SSIM_WIN {
            ssim_global(&x, &y)
        } else {
            ssim_plane(&x, &y, width, height)
        };
    }
    sum / 3.0
}

fn ssim_index(mx: f64, my: f64, vx: f64, vy: f64, cxy: f64) -> f64 {
    ((2.0 * mx * my + SSIM_C1) * (2.0 * cxy + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
}

/// One window of uniform weights over the whole plane.
fn ssim_global(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut vx, mut vy, mut cxy) = (0.0, 0.0, 0.0);
    for (&p, &q) in x.iter().zip(y) {
        vx += (p - mx) * (p - mx);
        vy += (q - my) * (q - my);
        cxy += (p - mx) * (q - my);
    }
    ssim_index(mx, my, vx / n, vy / n, cxy / n)
}

/// Mean SSIM of one plane over the valid window positions, with separable
/// Gaussian filtering of x, y, x², y² and xy.
fn ssim_plane(x: &[f64], y: &[f64], width: usize, height: usize) -> f64 {
    let k = ssim_kernel();
    let ow = width - SSIM_WIN + 1;
    let oh = height - SSIM_WIN + 1;
    // Horizontal pass: [5][height][ow].
    let mut horiz = vec![[0.0f64; 5]; height * ow];
    for row in 0..height {
        let xr = &x[row * width..(row + 1) * width];
        let yr = &y[row * width..(row + 1) * width];
        for ox in 0..ow {
            let mut acc = [0.0f64; 5];
            for (i, &w) in k.iter().enumerate() {
                let (p, q) = (xr[ox + i], yr[ox + i]);
                acc[0] += w * p;
                acc[1] += w * q;
                acc[2] += w * p * p;
                acc[3] += w * q * q;
                acc[4] += w * p * q;
            }
            horiz[row * ow + ox] = acc;
        }
    }
    // Vertical pass and the SSIM map.
    let mut total = 0.0;
    for oy in 0..oh {
        for ox in 0..ow {
            let mut acc = [0.0f64; 5];
            for (i, &w) in k.iter().enumerate() {
                let h = &horiz[(oy + i) * ow + ox];
                for (a, &v) in acc.iter_mut().zip(h) {
                    *a += w * v;
                }
            }
            let (mx, my) = (acc[0], acc[1]);
            let vx = acc[2] - mx * mx;
            let vy = acc[3] - my * my;
            let cxy = acc[4] - mx * my;
            total += ssim_index(mx, my, vx, vy, cxy);
        }
    }
    total / (ow * oh) as f64
}

/// The label that marks pixels to ignore in the ground truth.
pub const IGNORE_LABEL: u8 = 255;

/// Accumulates a confusion matrix of per-pixel class predictions over any number
/// of frames. Rows are true classes, columns predicted ones. Truth pixels labelled
/// [`IGNORE_LABEL`] (or any class id not below `num_classes`) are skipped;
/// predictions outside `0..num_classes` count as misses of the true class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    num_classes: usize,
    /// `counts[truth * num_classes + pred]`.
    counts: Vec<u64>,
    /// Per true class: pixels predicted as no valid class.
    invalid_pred: Vec<u64>,
}

impl ConfusionMatrix {
    /// An empty matrix for class ids `0..num_classes` (at most 255, since 255 is the
    /// ignore label).
    pub fn new(num_classes: usize) -> Self {
        let num_classes = num_classes.min(255);
        ConfusionMatrix {
            num_classes,
            counts: vec![0; num_classes * num_classes],
            invalid_pred: vec![0; num_classes],
        }
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Adds one frame's prediction and truth (same length, one class id per pixel).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn update(&mut self, pred: &[u8], truth: &[u8]) {
        assert_eq!(pred.len(), truth.len(), "ConfusionMatrix::update: lengths differ");
        let n = self.num_classes;
        for (&p, &t) in pred.iter().zip(truth) {
            let (p, t) = (p as usize, t as usize);
            if t >= n {
                continue;
            }
            if p < n {
                self.counts[t * n + p] += 1;
            } else {
                self.invalid_pred[t] += 1;
            }
        }
    }

    /// Adds the counts of another matrix of the same number of classes.
    ///
    /// # Panics
    /// If the numbers of classes differ.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(
            self.num_classes, other.num_classes,
            "ConfusionMatrix::merge: class counts differ"
        );
        self.counts.iter_mut().zip(&other.counts).for_each(|(a, b)| *a += b);
        self.invalid_pred
            .iter_mut()
            .zip(&other.invalid_pred)
            .for_each(|(a, b)| *a += b);
    }

    /// Forgets every count.
    pub fn reset(&mut self) {
        self.counts.fill(0);
        self.invalid_pred.fill(0);
    }

    /// Pixels of true class `truth` predicted as `pred`.
    pub fn count(&self, truth: usize, pred: usize) -> u64 {
        self.counts[truth * self.num_classes + pred]
    }

    /// Pixels counted (not ignored).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.invalid_pred.iter().sum::<u64>()
    }

    /// Intersection over union per class: `TP / (TP + FP + FN)`, `None` for a class
    /// that appears neither in the truth nor in the predictions.
    pub fn iou_per_class(&self) -> Vec<Option<f64>> {
        let n = self.num_classes;
        (0..n)
            .map(|c| {
                let tp = self.count(c, c);
                let row: u64 = self.counts[c * n..(c + 1) * n].iter().sum::<u64>() + self.invalid_pred[c];
                let col: u64 = (0..n).map(|t| self.count(t, c)).sum();
                let union = row + col - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// Mean IoU over the classes present in the truth or the predictions; NaN when
    /// nothing was counted.
    pub fn miou(&self) -> f64 {
        let ious: Vec<f64> = self.iou_per_class().into_iter().flatten().collect();
        if ious.is_empty() {
            f64::NAN
        } else {
            ious.iter().sum::<f64>() / ious.len() as f64
        }
    }

    /// Fraction of counted pixels predicted right; NaN when nothing was counted.
    pub fn pixel_accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return f64::NAN;
        }
        let right: u64 = (0..self.num_classes).map(|c| self.count(c, c)).sum();
        right as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn psnr_values() {
        let a = [10u8, 20, 30, 40];
        assert_eq!(psnr_u8(&a, &a), f64::INFINITY);
        // One sample off by 2 of 4: MSE 1, PSNR = 20 log10(255) = 48.1308 dB.
        let b = [10u8, 22, 30, 40];
        assert!(close(psnr_u8(&a, &b), 48.130_803_608, 1e-6));
        // Every sample off by 255: MSE 255², PSNR 0 dB.
        assert!(close(psnr_u8(&[0; 8], &[255; 8]), 0.0, 1e-12));
        // Off by 5 everywhere: MSE 25, 10 log10(65025 / 25) = 34.1514 dB.
        assert!(close(psnr_u8(&[100; 16], &[105; 16]), 34.151_403_521, 1e-6));
    }

    #[test]
    #[should_panic]
    fn psnr_length_mismatch_panics() {
        psnr_u8(&[1, 2], &[1]);
    }

    /// SSIM computed the slow way: every window position, the full 2-D window.
    fn ssim_reference(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
        let k = ssim_kernel();
        let mut total = 0.0;
        let mut windows = 0.0;
        for c in 0..3 {
            for oy in 0..=h - 11 {
                for ox in 0..=w - 11 {
                    let (mut mx, mut my, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0);
                    for j in 0..11 {
                        for i in 0..11 {
                            let wgt = k[i] * k[j];
                            let at = ((oy + j) * w + ox + i) * 3 + c;
                            let (p, q) = (a[at] as f64, b[at] as f64);
                            mx += wgt * p;
                            my += wgt * q;
                            xx += wgt * p * p;
                            yy += wgt * q * q;
                            xy += wgt * p * q;
                        }
                    }
                    let (vx, vy, cxy) = (xx - mx * mx, yy - my * my, xy - mx * my);
                    total += ((2.0 * mx * my + 6.5025) * (2.0 * cxy + 58.5225))
                        / ((mx * mx + my * my + 6.5025) * (vx + vy + 58.5225));
                    windows += 1.0;
                }
            }
        }
        total / windows
    }

    #[test]
    fn ssim_window_is_normalized_gaussian() {
        let k = ssim_kernel();
        assert!(close(k.iter().sum(), 1.0, 1e-12));
        // Ratio of the centre to its neighbour: exp(1 / (2 * 1.5²)).
        assert!(close(k[5] / k[4], (1.0f64 / 4.5).exp(), 1e-12));
    }

    #[test]
    fn ssim_values() {
        let (w, h) = (24, 20);
        let a: Vec<u8> = (0..w * h * 3).map(|i| ((i * 37) % 256) as u8).collect();
        assert!(close(ssim_rgb_u8(&a, &a, w, h), 1.0, 1e-12));
        // Two flat frames, 100 and 110: variances vanish, so SSIM is the luminance
        // term (2·100·110 + C1) / (100² + 110² + C1) with C1 = 6.5025.
        let f100 = vec![100u8; w * h * 3];
        let f110 = vec![110u8; w * h * 3];
        let want = (22000.0 + 6.5025) / (22100.0 + 6.5025);
        assert!(close(ssim_rgb_u8(&f100, &f110, w, h), want, 1e-12));
        // A textured pair against the brute-force definition.
        let b: Vec<u8> = a
            .iter()
            .enumerate()
            .map(|(i, &v)| v.saturating_add((i % 7) as u8 * 3))
            .collect();
        let got = ssim_rgb_u8(&a, &b, w, h);
        let want = ssim_reference(&a, &b, w, h);
        assert!(close(got, want, 1e-9), "{got} vs {want}");
        assert!(got < 1.0);
        // Inverted image: strongly negative correlation.
        let inv: Vec<u8> = a.iter().map(|&v| 255 - v).collect();
        assert!(ssim_rgb_u8(&a, &inv, w, h) < 0.0);
    }

    #[test]
    fn ssim_small_frames_use_one_window() {
        // 2x1 RGB: channel 0 is [0, 100] vs [100, 0]: means 50 and 50, variances
        // 2500 each, covariance -2500.
        let a = [0u8, 7, 7, 100, 7, 7];
        let b = [100u8, 7, 7, 0, 7, 7];
        let c0 = ((2.0 * 2500.0 + 6.5025) * (-5000.0 + 58.5225)) / ((5000.0 + 6.5025) * (5000.0 + 58.5225));
        let want = (c0 + 1.0 + 1.0) / 3.0;
        assert!(close(ssim_rgb_u8(&a, &b, 2, 1), want, 1e-12));
    }

    #[test]
    fn confusion_matrix_values() {
        let mut cm = ConfusionMatrix::new(4);
        // truth: 0 0 0 1 1 2 255 | pred: 0 0 1 1 2 2 3
        cm.update(&[0, 0, 1, 1, 2, 2, 3], &[0, 0, 0, 1, 1, 2, 255]);
        assert_eq!(cm.total(), 6);
        assert_eq!(cm.count(0, 1), 1);
        // class 0: TP 2, FN 1, FP 0 -> 2/3; class 1: TP 1, FN 1, FP 1 -> 1/3;
        // class 2: TP 1, FP 1 -> 1/2; class 3: absent (its prediction was ignored).
        let iou = cm.iou_per_class();
        assert_eq!(iou.len(), 4);
        assert!(close(iou[0].unwrap(), 2.0 / 3.0, 1e-12));
        assert!(close(iou[1].unwrap(), 1.0 / 3.0, 1e-12));
        assert!(close(iou[2].unwrap(), 0.5, 1e-12));
        assert_eq!(iou[3], None);
        assert!(close(cm.miou(), (2.0 / 3.0 + 1.0 / 3.0 + 0.5) / 3.0, 1e-12));
        assert!(close(cm.pixel_accuracy(), 4.0 / 6.0, 1e-12));

        // A class only predicted counts with IoU 0; an out-of-range prediction is a
        // miss of the true class.
        cm.update(&[3, 9], &[2, 2]);
        let iou = cm.iou_per_class();
        assert_eq!(iou[3], Some(0.0));
        // class 2: TP 1, FP 1, FN 2 -> 1/4.
        assert!(close(iou[2].unwrap(), 0.25, 1e-12));
        assert!(close(cm.pixel_accuracy(), 4.0 / 8.0, 1e-12));

        let mut other = ConfusionMatrix::new(4);
        other.merge(&cm);
        assert_eq!(other, cm);
        other.reset();
        assert_eq!(other.total(), 0);
        assert!(other.miou().is_nan());
        assert!(other.pixel_accuracy().is_nan());
        assert!(other.iou_per_class().iter().all(Option::is_none));
    }
}
