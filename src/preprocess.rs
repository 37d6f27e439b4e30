//! How a model is fed and how its outputs are read back: the sidecar's `[preprocess]`
//! table (channel order, layout, normalisation, resize), and the per-frame conversions
//! between the engine's own frame tensor and the model's tensors.
//!
//! The engine keeps every frame as planar RGB in [0,1], `[3, ph, pw]`, padded to the
//! model's `size_multiple` ([`Tensors`](crate::tensors::Tensors)). A model whose
//! `[preprocess]` is the default (RGB, NCHW, `scale = 255`, no mean or std) and whose
//! graph takes any size is fed that tensor as it is. Any other model gets its input
//! written by [`write_input`]:
//!
//! - model value = `(pixel / scale - mean[c]) / std[c]`, `pixel` the 8-bit value and
//!   `c` the model's channel (so `mean` and `std` are listed in the model's channel
//!   order);
//! - channels in the model's order (`rgb` or `bgr`), laid out `nchw` or `nhwc`;
//! - a graph with a fixed height and width gets the frame resized to it: `stretch`
//!   (bilinear, PyTorch's `align_corners=False`, no antialiasing: the usual Cityscapes
//!   export) or `letterbox` (the aspect ratio kept, the frame centred, the rest black).
//!
//! Outputs are mapped back to the frame through the same [`Placement`]: `denoised`
//! bilinearly and de-normalised ([`read_denoised`]), `labels` nearest
//! ([`read_labels`]), `logits` bilinearly before the argmax
//! ([`convert::logits_to_labels_mapped`](crate::convert::logits_to_labels_mapped)).
use serde::Deserialize;

/// The channel order of the model's image (and `denoised`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// The memory layout of the model's image (and `denoised`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// [N, 3, H, W]
    #[default]
    Nchw,
    /// [N, H, W, 3]
    Nhwc,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }

    /// The channel axis of a rank-4 image.
    pub fn channel_axis(self) -> usize {
        match self {
            Layout::Nchw => 1,
            Layout::Nhwc => 3,
        }
    }

    /// The (height, width) axes of a rank-4 image.
    pub fn spatial_axes(self) -> (usize, usize) {
        match self {
            Layout::Nchw => (2, 3),
            Layout::Nhwc => (1, 2),
        }
    }

    /// The shape of a batch of `n` images of `w` x `h`.
    pub fn shape(self, n: usize, w: usize, h: usize) -> [usize; 4] {
        match self {
            Layout::Nchw => [n, 3, h, w],
            Layout::Nhwc => [n, h, w, 3],
        }
    }
}

/// How a frame is brought to a graph's fixed input size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Both axes scaled to the input size (the aspect ratio may change).
    #[default]
    Stretch,
    /// One scale for both axes, the frame centred, the rest black.
    Letterbox,
}

/// The sidecar's `[preprocess]` table. The defaults are the contract's original input:
/// RGB in [0,1], NCHW.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preprocess {
    pub channels: ChannelOrder,
    pub layout: Layout,
    /// The 8-bit pixel is divided by `scale` before `mean` and `std` apply.
    pub scale: f32,
    /// Per model channel, in the model's channel order.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub resize: Resize,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            channels: ChannelOrder::Rgb,
            layout: Layout::Nchw,
            scale: 255.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            resize: Resize::Stretch,
        }
    }
}

impl Preprocess {
    /// Checks the values: a finite positive `scale` and `std`, a finite `mean`.
    pub fn check(&self) -> Result<(), String> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(format!("scale = {} must be a positive number", self.scale));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("std = {:?}: {s} must be a positive number", self.std));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(format!("mean = {:?} must be finite numbers", self.mean));
        }
        Ok(())
    }

    /// Whether the model takes the engine's own frame tensor as it is: RGB in [0,1],
    /// NCHW.
    pub fn feeds_frame_tensor(&self) -> bool {
        self.channels == ChannelOrder::Rgb && self.layout == Layout::Nchw && self.affine().is_identity()
    }

    /// The per-channel transform from the engine's [0,1] values to the model's.
    pub fn affine(&self) -> Affine {
        let src = match self.channels {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let mut gain = [0.0; 3];
        let mut offset = [0.0; 3];
        for c in 0..3 {
            gain[c] = 255.0 / (self.scale * self.std[c]);
            offset[c] = -self.mean[c] / self.std[c];
        }
        Affine { src, gain, offset }
    }
}

/// Per model channel `c`: the RGB plane it reads (`src[c]`), and model value =
/// `gain[c]` × value in [0,1] + `offset[c]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    pub src: [usize; 3],
    pub gain: [f32; 3],
    pub offset: [f32; 3],
}

impl Affine {
    fn is_identity(&self) -> bool {
        self.src == [0, 1, 2] && self.gain == [1.0; 3] && self.offset == [0.0; 3]
    }

    /// The model channel that holds RGB plane `k`.
    fn channel_of(&self, k: usize) -> usize {
        self.src.iter().position(|&s| s == k).unwrap_or(k)
    }
}

/// Maps the pixels of one axis onto another grid: pixel `d` lies at
/// `offset + (d + 0.5) × scale` in the other grid's continuous coordinates (pixel `i`
/// there spans [i, i + 1)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AxisMap {
    pub offset: f32,
    pub scale: f32,
}

impl AxisMap {
    pub const IDENTITY: AxisMap = AxisMap {
        offset: 0.0,
        scale: 1.0,
    };

    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }

    /// Bilinear taps of pixel `d` in a grid of `len` pixels, PyTorch's
    /// `align_corners=False` (clamped at the edges): `(i0, i1, weight of i1)`.
    #[inline(always)]
    pub fn bilinear(&self, d: usize, len: usize) -> (usize, usize, f32) {
        let s = (self.offset + (d as f32 + 0.5) * self.scale - 0.5).max(0.0);
        let i0 = (s as usize).min(len - 1);
        let i1 = if i0 < len - 1 { i0 + 1 } else { i0 };
        (i0, i1, (s - i0 as f32).min(1.0))
    }

    /// The pixel of a grid of `len` pixels that pixel `d` falls in (clamped).
    #[inline(always)]
    pub fn nearest(&self, d: usize, len: usize) -> usize {
        let s = (self.offset + (d as f32 + 0.5) * self.scale).max(0.0);
        (s as usize).min(len - 1)
    }
}

/// Where a frame lies in the model's input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// The model input's (width, height).
    pub input: (usize, usize),
    /// The frame's box in the model input: (x0, y0, width, height).
    pub frame_box: (usize, usize, usize, usize),
    /// The frame grid that fills the box, (width, height): the padded frame for
    /// graphs of any size, the frame itself for a fixed size.
    pub grid: (usize, usize),
}

impl Placement {
    /// A graph of any size: the padded frame is the input.
    pub fn padded(pw: usize, ph: usize) -> Placement {
        Placement {
            input: (pw, ph),
            frame_box: (0, 0, pw, ph),
            grid: (pw, ph),
        }
    }

    /// A graph of the fixed `input` size (width, height), fed a `width` x `height`
    /// frame the way `resize` says.
    pub fn fixed(width: usize, height: usize, input: (usize, usize), resize: Resize) -> Placement {
        let (iw, ih) = input;
        let frame_box = match resize {
            Resize::Stretch => (0, 0, iw, ih),
            Resize::Letterbox => {
                let k = (iw as f64 / width.max(1) as f64).min(ih as f64 / height.max(1) as f64);
                let bw = ((width as f64 * k).round() as usize).clamp(1, iw);
                let bh = ((height as f64 * k).round() as usize).clamp(1, ih);
                ((iw - bw) / 2, (ih - bh) / 2, bw, bh)
            }
        };
        Placement {
            input,
            frame_box,
            grid: (width, height),
        }
    }

    /// Whether the model input is the padded frame itself.
    pub fn is_identity(&self) -> bool {
        self.input == self.grid && self.frame_box == (0, 0, self.input.0, self.input.1)
    }

    /// The (y, x) maps from the frame grid to an output grid of `out` (width, height)
    /// that covers the whole model input.
    pub fn to_output(self, out: (usize, usize)) -> (AxisMap, AxisMap) {
        let (x0, y0, bw, bh) = self.frame_box;
        let axis = |o: usize, i: usize, start: usize, extent: usize, grid: usize| {
            let k = o as f32 / i as f32;
            AxisMap {
                offset: start as f32 * k,
                scale: extent as f32 / grid as f32 * k,
            }
        };
        (
            axis(out.1, self.input.1, y0, bh, self.grid.1),
            axis(out.0, self.input.0, x0, bw, self.grid.0),
        )
    }

    /// The (y, x) maps from the pixels of the frame's box in the model input (counted
    /// from the box's corner) onto the frame grid, as sampled when the input is written.
    fn frame_maps(self) -> (AxisMap, AxisMap) {
        let (_, _, bw, bh) = self.frame_box;
        let axis = |extent: usize, grid: usize| AxisMap {
            offset: 0.0,
            scale: grid as f32 / extent as f32,
        };
        (axis(bh, self.grid.1), axis(bw, self.grid.0))
    }
}

/// Scratch buffers of the conversions, reused from frame to frame (they grow only
/// when the sizes do).
#[derive(Debug, Default)]
pub struct Scratch {
    taps: Vec<(usize, usize, f32)>,
    index: Vec<usize>,
    row: Vec<f32>,
}

fn taps(dst: &mut Vec<(usize, usize, f32)>, map: AxisMap, n: usize, len: usize) {
    dst.clear();
    dst.extend((0..n).map(|d| map.bilinear(d, len)));
}

/// Writes one frame's model input into `dst` (3 × the input's width × height values,
/// in the model's layout): `src` is the frame tensor (planar RGB in [0,1],
/// `[3, ph, pw]`), `place` where the frame goes.
///
/// # Panics
/// When a slice is smaller than the sizes say.
pub fn write_input(
    pre: &Preprocess,
    place: &Placement,
    src: &[f32],
    (pw, ph): (usize, usize),
    dst: &mut [f32],
    scratch: &mut Scratch,
) {
    let (iw, ih) = place.input;
    let (x0, y0, bw, bh) = place.frame_box;
    let (gw, gh) = place.grid;
    assert!(gw <= pw && gh <= ph && src.len() >= 3 * pw * ph, "write_input: frame");
    assert!(dst.len() >= 3 * iw * ih, "write_input: model input");
    let affine = pre.affine();
    let (ymap, xmap) = place.frame_maps();
    let resample = !place.is_identity();
    if resample {
        taps(&mut scratch.taps, xmap, bw, gw);
    }
    scratch.row.resize(iw, 0.0);
    for c in 0..3 {
        let plane = &src[affine.src[c] * pw * ph..(affine.src[c] + 1) * pw * ph];
        let (gain, offset) = (affine.gain[c], affine.offset[c]);
        for y in 0..ih {
            // The row in the model's channel c, written in place (NCHW) or into
            // `row` and then interleaved (NHWC).
            let row: &mut [f32] = match pre.layout {
                Layout::Nchw => &mut dst[(c * ih + y) * iw..(c * ih + y + 1) * iw],
                Layout::Nhwc => &mut scratch.row[..iw],
            };
            if !resample {
                let s = &plane[y * pw..y * pw + iw];
                for (o, &v) in row.iter_mut().zip(s) {
                    *o = gain * v + offset;
                }
            } else if y < y0 || y >= y0 + bh {
                row.fill(offset);
            } else {
                let (r0, r1, wy) = ymap.bilinear(y - y0, gh);
                let (a, b) = (&plane[r0 * pw..r0 * pw + gw], &plane[r1 * pw..r1 * pw + gw]);
                row[..x0].fill(offset);
                row[x0 + bw..].fill(offset);
                for (o, &(i0, i1, wx)) in row[x0..x0 + bw].iter_mut().zip(&scratch.taps) {
                    let top = a[i0] + (a[i1] - a[i0]) * wx;
                    let bottom = b[i0] + (b[i1] - b[i0]) * wx;
                    *o = gain * (top + (bottom - top) * wy) + offset;
                }
            }
            if pre.layout == Layout::Nhwc {
                let out = &mut dst[y * iw * 3..(y + 1) * iw * 3];
                for (o, &v) in out.iter_mut().skip(c).step_by(3).zip(&scratch.row[..iw]) {
                    *o = v;
                }
            }
        }
    }
}

/// Reads one frame's `denoised` output (`src`: the model input's size and layout, the
/// model's channels and normalisation) back into the frame tensor `dst` (planar RGB in
/// [0,1], `[3, ph, pw]`), over the frame grid. Values that are not finite keep what
/// `dst` holds (the input pixel); returns how many there were.
///
/// # Panics
/// When a slice is smaller than the sizes say.
pub fn read_denoised(
    pre: &Preprocess,
    place: &Placement,
    src: &[f32],
    dst: &mut [f32],
    (pw, ph): (usize, usize),
    scratch: &mut Scratch,
) -> usize {
    let (iw, ih) = place.input;
    let (gw, gh) = place.grid;
    assert!(gw <= pw && gh <= ph && dst.len() >= 3 * pw * ph, "read_denoised: frame");
    assert!(src.len() >= 3 * iw * ih, "read_denoised: model output");
    let affine = pre.affine();
    // The value at model pixel (channel c, x, y).
    let (cs, xs, ys) = match pre.layout {
        Layout::Nchw => (iw * ih, 1, iw),
        Layout::Nhwc => (1, 3, iw * 3),
    };
    // Frame pixels sample the model's output inside the frame's box only (clamped to
    // its edges), so that a letterbox's padding never bleeds into the frame.
    let (x0, y0, bw, bh) = place.frame_box;
    let (ymap, xmap) = (
        AxisMap {
            offset: 0.0,
            scale: bh as f32 / gh as f32,
        },
        AxisMap {
            offset: 0.0,
            scale: bw as f32 / gw as f32,
        },
    );
    let resample = !place.is_identity();
    if resample {
        taps(&mut scratch.taps, xmap, gw, bw);
        for t in scratch.taps.iter_mut() {
            t.0 += x0;
            t.1 += x0;
        }
    }
    let mut bad = 0;
    for k in 0..3 {
        let c = affine.channel_of(k);
        let (inv_gain, offset) = (1.0 / affine.gain[c], affine.offset[c]);
        let plane = &mut dst[k * pw * ph..(k + 1) * pw * ph];
        let model = &src[c * cs..];
        for y in 0..gh {
            let out = &mut plane[y * pw..y * pw + gw];
            if !resample {
                let row = &model[y * ys..];
                for (x, o) in out.iter_mut().enumerate() {
                    let v = (row[x * xs] - offset) * inv_gain;
                    if v.is_finite() {
                        *o = v;
                    } else {
                        bad += 1;
                    }
                }
                continue;
            }
            let (r0, r1, wy) = ymap.bilinear(y, bh);
            let (a, b) = (&model[(y0 + r0) * ys..], &model[(y0 + r1) * ys..]);
            for (o, &(i0, i1, wx)) in out.iter_mut().zip(&scratch.taps) {
                let (p0, p1) = (i0 * xs, i1 * xs);
                let top = a[p0] + (a[p1] - a[p0]) * wx;
                let bottom = b[p0] + (b[p1] - b[p0]) * wx;
                let v = (top + (bottom - top) * wy - offset) * inv_gain;
                if v.is_finite() {
                    *o = v;
                } else {
                    bad += 1;
                }
            }
        }
    }
    bad
}

/// A class id as a model may give it.
pub trait LabelValue: Copy {
    /// The id as a class of `classes`, or `None` when it is not one.
    fn class(self, classes: usize) -> Option<u8>;
}

impl LabelValue for u8 {
    #[inline(always)]
    fn class(self, classes: usize) -> Option<u8> {
        ((self as usize) < classes).then_some(self)
    }
}

impl LabelValue for i32 {
    #[inline(always)]
    fn class(self, classes: usize) -> Option<u8> {
        (self >= 0 && (self as usize) < classes).then_some(self as u8)
    }
}

impl LabelValue for i64 {
    #[inline(always)]
    fn class(self, classes: usize) -> Option<u8> {
        (self >= 0 && (self as u64) < classes as u64).then_some(self as u8)
    }
}

/// Reads one frame's `labels` output (`src`: `[lh, lw]` at any resolution, covering the
/// model input) back into the class map `dst` (row stride `stride`) over the frame's
/// `width` x `height`, nearest. Ids that are not classes become 0; returns how many
/// there were.
///
/// # Panics
/// When a slice is smaller than the sizes say, or a size is 0.
#[allow(clippy::too_many_arguments)]
pub fn read_labels<T: LabelValue>(
    src: &[T],
    (lw, lh): (usize, usize),
    place: &Placement,
    classes: usize,
    (width, height): (usize, usize),
    dst: &mut [u8],
    stride: usize,
    scratch: &mut Scratch,
) -> usize {
    assert!(lw > 0 && lh > 0 && src.len() >= lw * lh, "read_labels: labels");
    if width == 0 || height == 0 {
        return 0;
    }
    assert!(
        width <= stride && dst.len() >= (height - 1) * stride + width,
        "read_labels: class map"
    );
    let (ymap, xmap) = place.to_output((lw, lh));
    scratch.index.clear();
    scratch.index.extend((0..width).map(|x| xmap.nearest(x, lw)));
    let mut bad = 0;
    for y in 0..height {
        let row = &src[ymap.nearest(y, lh) * lw..];
        for (o, &i) in dst[y * stride..y * stride + width].iter_mut().zip(&scratch.index) {
            *o = match row[i].class(classes) {
                Some(c) => c,
                None => {
                    bad += 1;
                    0
                }
            };
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imagenet() -> Preprocess {
        Preprocess {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            ..Preprocess::default()
        }
    }

    /// A planar [3, ph, pw] frame whose value at (k, x, y) is `f(k, x, y)`.
    fn frame(pw: usize, ph: usize, f: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
        let mut v = vec![0.0; 3 * pw * ph];
        for k in 0..3 {
            for y in 0..ph {
                for x in 0..pw {
                    v[(k * ph + y) * pw + x] = f(k, x, y);
                }
            }
        }
        v
    }

    #[test]
    fn defaults_are_the_original_contract_and_bad_values_are_refused() {
        assert!(Preprocess::default().feeds_frame_tensor());
        assert!(!imagenet().feeds_frame_tensor());
        let bgr = Preprocess {
            channels: ChannelOrder::Bgr,
            ..Preprocess::default()
        };
        assert!(!bgr.feeds_frame_tensor());
        for bad in [
            Preprocess {
                scale: 0.0,
                ..Preprocess::default()
            },
            Preprocess {
                std: [1.0, -1.0, 1.0],
                ..Preprocess::default()
            },
            Preprocess {
                mean: [f32::NAN, 0.0, 0.0],
                ..Preprocess::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
        let parsed: Preprocess = toml::from_str(
            "channels = \"bgr\"\nlayout = \"nhwc\"\nscale = 1.0\nmean = [1, 2, 3]\nresize = \"letterbox\"\n",
        )
        .unwrap();
        assert_eq!(parsed.channels, ChannelOrder::Bgr);
        assert_eq!(parsed.layout, Layout::Nhwc);
        assert_eq!(parsed.resize, Resize::Letterbox);
        assert_eq!(parsed.std, [1.0; 3]);
        assert!(toml::from_str::<Preprocess>("layout = \"chw\"").is_err());
        assert!(toml::from_str::<Preprocess>("colour = \"rgb\"").is_err());
    }

    #[test]
    fn normalisation_channel_order_and_layout() {
        let (pw, ph) = (4, 2);
        let src = frame(pw, ph, |k, x, y| (k * 100 + y * 10 + x) as f32 / 255.0);
        let pre = Preprocess {
            channels: ChannelOrder::Bgr,
            layout: Layout::Nhwc,
            ..imagenet()
        };
        let mut dst = vec![0.0; 3 * pw * ph];
        let mut s = Scratch::default();
        write_input(&pre, &Placement::padded(pw, ph), &src, (pw, ph), &mut dst, &mut s);
        for y in 0..ph {
            for x in 0..pw {
                for c in 0..3 {
                    let k = 2 - c; // bgr: model channel 0 is blue
                    let pixel = (k * 100 + y * 10 + x) as f32;
                    let want = (pixel / 255.0 - pre.mean[c]) / pre.std[c];
                    let got = dst[(y * pw + x) * 3 + c];
                    assert!((got - want).abs() < 1e-5, "({x},{y}) c{c}: {got} vs {want}");
                }
            }
        }
        // Reading the input back as `denoised` gives the frame again.
        let mut back = vec![0.0; 3 * pw * ph];
        let bad = read_denoised(&pre, &Placement::padded(pw, ph), &dst, &mut back, (pw, ph), &mut s);
        assert_eq!(bad, 0);
        for (a, b) in back.iter().zip(&src) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn stretch_is_pytorch_bilinear() {
        // A 4x2 frame (padded to 8x4) stretched to 8x4: x taps at (d + 0.5) / 2 - 0.5.
        let (pw, ph) = (8, 4);
        let src = frame(
            pw,
            ph,
            |_, x, y| if x < 4 && y < 2 { (x + 10 * y) as f32 } else { 99.0 },
        );
        let place = Placement::fixed(4, 2, (8, 4), Resize::Stretch);
        let pre = Preprocess {
            scale: 1.0,
            ..Preprocess::default()
        };
        let mut dst = vec![0.0; 3 * 8 * 4];
        write_input(&pre, &place, &src, (pw, ph), &mut dst, &mut Scratch::default());
        // Bilinear on a linear ramp is the ramp at the clamped source coordinate.
        let coord = |d: usize, len: usize| ((d as f32 + 0.5) / 2.0 - 0.5).clamp(0.0, (len - 1) as f32);
        for y in 0..4 {
            for x in 0..8 {
                let want = (coord(x, 4) + 10.0 * coord(y, 2)) * 255.0;
                let got = dst[y * 8 + x];
                assert!((got - want).abs() < 1e-3, "({x},{y}): {got} vs {want}");
            }
        }
    }

    #[test]
    fn letterbox_centres_the_frame_and_pads_black() {
        // 8x2 into 8x8: scale 1, box 8x2 at y0 = 3.
        let place = Placement::fixed(8, 2, (8, 8), Resize::Letterbox);
        assert_eq!(place.frame_box, (0, 3, 8, 2));
        let src = frame(8, 2, |k, x, _| (k + x) as f32 / 10.0);
        let pre = imagenet();
        let mut dst = vec![0.0; 3 * 64];
        write_input(&pre, &place, &src, (8, 2), &mut dst, &mut Scratch::default());
        for c in 0..3 {
            let black = -pre.mean[c] / pre.std[c];
            for y in 0..8 {
                for x in 0..8 {
                    let got = dst[(c * 8 + y) * 8 + x];
                    let want = if (3..5).contains(&y) {
                        ((c + x) as f32 / 10.0 - pre.mean[c]) / pre.std[c]
                    } else {
                        black
                    };
                    assert!((got - want).abs() < 1e-5, "c{c} ({x},{y}): {got} vs {want}");
                }
            }
        }
        // A tall frame: 2x8 into 8x4 is scaled by 0.5 to 1x4, centred at x0 = 3.
        assert_eq!(
            Placement::fixed(2, 8, (8, 4), Resize::Letterbox).frame_box,
            (3, 0, 1, 4)
        );
    }

    #[test]
    fn outputs_map_back_through_the_placement() {
        // A 6x3 frame letterboxed into 12x12: scale 2, box 12x6 at y0 = 3.
        let place = Placement::fixed(6, 3, (12, 12), Resize::Letterbox);
        assert_eq!(place.frame_box, (0, 3, 12, 6));
        // Labels at half the input resolution (6x6) that encode their own position.
        let labels: Vec<i64> = (0..36).map(|i| i as i64).collect();
        let mut map = vec![0u8; 8 * 3];
        let bad = read_labels(
            &labels,
            (6, 6),
            &place,
            100,
            (6, 3),
            &mut map,
            8,
            &mut Scratch::default(),
        );
        assert_eq!(bad, 0);
        // Frame pixel (x, y) is at input (2x + 1, 3 + 2y + 1), label pixel of half that.
        for y in 0..3 {
            for x in 0..6 {
                // Input pixel centres (2x + 1, 3 + 2y + 1), halved and floored.
                let (lx, ly) = (x, (4 + 2 * y) / 2);
                assert_eq!(map[y * 8 + x] as usize, ly * 6 + lx, "({x},{y})");
            }
        }
        // Ids outside the classes become 0 and are counted.
        let bad = read_labels(
            &labels,
            (6, 6),
            &place,
            10,
            (6, 3),
            &mut map,
            8,
            &mut Scratch::default(),
        );
        assert_eq!(bad, 18); // the frame reads label rows 2, 3 and 4: ids 12..=29

        // Denoised, stretched: a ramp in the input maps back to the ramp.
        let place = Placement::fixed(4, 2, (8, 4), Resize::Stretch);
        let out = frame(8, 4, |k, x, y| (k * 100 + x + 10 * y) as f32 / 255.0);
        let mut dst = vec![-1.0; 3 * 4 * 2];
        let bad = read_denoised(
            &Preprocess::default(),
            &place,
            &out,
            &mut dst,
            (4, 2),
            &mut Scratch::default(),
        );
        assert_eq!(bad, 0);
        for k in 0..3 {
            for y in 0..2 {
                for x in 0..4 {
                    // Frame pixel x is at input coordinate 2x + 0.5 (pixel centres: 2x + 1 - 0.5).
                    let want = (k * 100) as f32 + (2 * x) as f32 + 0.5 + 10.0 * ((2 * y) as f32 + 0.5);
                    let got = dst[(k * 2 + y) * 4 + x] * 255.0;
                    assert!((got - want).abs() < 1e-3, "k{k} ({x},{y}): {got} vs {want}");
                }
            }
        }
        // A shrunk letterbox: 40x40 into 64x32 is a 32x32 box at x0 = 16. The model
        // gives white inside the box and black padding: none of it reaches the frame.
        let boxed = Placement::fixed(40, 40, (64, 32), Resize::Letterbox);
        assert_eq!(boxed.frame_box, (16, 0, 32, 32));
        let white = frame(64, 32, |_, x, _| if (16..48).contains(&x) { 1.0 } else { 0.0 });
        let mut dst = vec![0.5; 3 * 40 * 40];
        read_denoised(
            &Preprocess::default(),
            &boxed,
            &white,
            &mut dst,
            (40, 40),
            &mut Scratch::default(),
        );
        assert!(dst.iter().all(|&v| v == 1.0));
        // Non-finite values keep the input.
        let mut nan = out.clone();
        nan[0] = f32::NAN;
        let mut dst = vec![0.5; 3 * 4 * 2];
        let bad = read_denoised(
            &Preprocess::default(),
            &place,
            &nan,
            &mut dst,
            (4, 2),
            &mut Scratch::default(),
        );
        assert_eq!(bad, 1);
        assert_eq!(dst[0], 0.5);
    }
}
