//! The noise's random numbers: xoshiro256++ seeded through SplitMix64 per
//! `(seed, frame_index)`, and a 65 536-entry table of standard normal samples, both
//! defined here so that the same pair always gives the same noise.
use std::sync::LazyLock;

// ---------------------------------------------------------------------------
// Random numbers
// ---------------------------------------------------------------------------

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function (a strong 64-bit mixer).
#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++: small, fast, and good enough for image noise by a wide margin.
#[derive(Debug, Clone)]
struct Xoshiro256pp {
    s: [u64; 4],
}

impl Xoshiro256pp {
    /// A generator for one frame: its state is a hash of both numbers, so nearby
    /// seeds and frame indices give unrelated streams.
    fn for_frame(seed: u64, frame_index: u64) -> Self {
        let mut sm = mix64(seed.wrapping_add(GOLDEN_GAMMA))
            ^ mix64(frame_index.wrapping_add(0xD1B5_4A32_D192_ED03).rotate_left(17));
        let mut s = [0u64; 4];
        for w in &mut s {
            sm = sm.wrapping_add(GOLDEN_GAMMA);
            *w = mix64(sm);
        }
        if s == [0; 4] {
            s[0] = GOLDEN_GAMMA;
        }
        Xoshiro256pp { s }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

const NORMAL_TABLE_BITS: u32 = 16;
const NORMAL_TABLE_LEN: usize = 1 << NORMAL_TABLE_BITS;

/// Standard normal samples for 16-bit uniform indices: entry `i` is the mean of the
/// standard normal law over its `i`-th quantile bin of probability 2⁻¹⁶, rescaled
/// so that the table has exactly zero mean and unit variance. The outermost bins
/// hold the tail means (±4.5); the law is thus truncated near ±4.5 sigma, which
/// matters for nothing an 8-bit image can show.
static NORMAL_TABLE: LazyLock<Box<[f32; NORMAL_TABLE_LEN]>> = LazyLock::new(build_normal_table);

fn build_normal_table() -> Box<[f32; NORMAL_TABLE_LEN]> {
    let n = NORMAL_TABLE_LEN;
    let pdf = |x: f64| (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    // Bin edges e_i = Phi^-1(i / n), i = 1..n-1, found by integrating the density
    // (trapezoid rule, step 2e-5, from -7 where the remaining mass is ~1e-12).
    let mut pdf_at_edge = vec![0.0f64; n + 1]; // pdf(e_0 = -inf) = pdf(e_n = inf) = 0
    let h = 2e-5;
    let mut x = -7.0f64;
    let mut cdf = 1.28e-12;
    let mut prev = pdf(x);
    let mut i = 1usize;
    while i < n / 2 {
        let next_x = x + h;
        let next = pdf(next_x);
        let next_cdf = cdf + 0.5 * h * (prev + next);
        while i < n / 2 && next_cdf >= i as f64 / n as f64 {
            let t = (i as f64 / n as f64 - cdf) / (next_cdf - cdf);
            pdf_at_edge[i] = pdf(x + t * h);
            i += 1;
        }
        x = next_x;
        cdf = next_cdf;
        prev = next;
    }
    pdf_at_edge[n / 2] = pdf(0.0);
    for i in n / 2 + 1..n {
        pdf_at_edge[i] = pdf_at_edge[n - i];
    }
    // Mean over bin [e_i, e_{i+1}] = n * (pdf(e_i) - pdf(e_{i+1})).
    let mut table = vec![0.0f64; n];
    for (i, v) in table.iter_mut().enumerate().take(n / 2) {
        *v = n as f64 * (pdf_at_edge[i] - pdf_at_edge[i + 1]);
    }
    for i in n / 2..n {
        table[i] = -table[n - 1 - i];
    }
    let var = table.iter().map(|v| v * v).sum::<f64>() / n as f64;
    let scale = 1.0 / var.sqrt();
    let mut out = Box::new([0.0f32; NORMAL_TABLE_LEN]);
    for (o, v) in out.iter_mut().zip(&table) {
        *o = (v * scale) as f32;
    }
    out
}

/// Standard normal and uniform variates drawn from one xoshiro stream; each 64-bit
/// word gives four normals.
pub(super) struct NoiseSource<'a> {
    rng: Xoshiro256pp,
    table: &'a [f32; NORMAL_TABLE_LEN],
    bits: u64,
    left: u32,
}

impl<'a> NoiseSource<'a> {
    pub(super) fn new(seed: u64, frame_index: u64) -> Self {
        NoiseSource {
            rng: Xoshiro256pp::for_frame(seed, frame_index),
            table: &NORMAL_TABLE,
            bits: 0,
            left: 0,
        }
    }

    #[inline(always)]
    pub(super) fn normal(&mut self) -> f32 {
        if self.left == 0 {
            self.bits = self.rng.next_u64();
            self.left = 4;
        }
        let idx = self.bits as u16;
        self.bits >>= 16;
        self.left -= 1;
        self.table[idx as usize]
    }

    /// Uniform in [0, 1) with 24 bits of resolution.
    #[inline(always)]
    pub(super) fn uniform(&mut self) -> f32 {
        (self.rng.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::std_of;

    #[test]
    fn normal_table_is_standard() {
        let t = &**NORMAL_TABLE;
        let (mean, sd) = std_of(t.iter().map(|&v| v as f64));
        assert!(mean.abs() < 1e-6, "mean {mean}");
        assert!((sd - 1.0).abs() < 1e-5, "sd {sd}");
        // Monotone, symmetric, tails near 4.5 sigma.
        assert!(t.windows(2).all(|w| w[0] < w[1]));
        assert!((t[0] + t[NORMAL_TABLE_LEN - 1]).abs() < 1e-6);
        assert!(t[0] < -4.3 && t[0] > -4.8, "tail {}", t[0]);
        // The median bins sit near 0 and the quartiles near +-0.6745.
        let q3 = t[NORMAL_TABLE_LEN * 3 / 4];
        assert!((q3 - 0.6745).abs() < 1e-3, "q3 {q3}");
        // Kurtosis of a normal law is 3.
        let k = t.iter().map(|&v| (v as f64).powi(4)).sum::<f64>() / NORMAL_TABLE_LEN as f64;
        assert!((k - 3.0).abs() < 0.02, "kurtosis {k}");
    }
}
