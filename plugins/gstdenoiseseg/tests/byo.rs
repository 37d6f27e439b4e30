//! The `denoiseseg` element on bring-your-own models: the sidecar's `[preprocess]` table
//! (channel order, layout, normalization, fixed input sizes with stretch or letterbox
//! resize), int32/int64 labels at a lower resolution, fixed batch 1, and two elements in
//! a chain (a denoiser, then a segmenter). The models are in tests/models (see its
//! README); every expected value is computed here from the contract's formulas,
//! independently of the engine.
use gst::prelude::*;

mod common;
use common::{argmax, element, harness, init, mask_meta_count, mask_of, model, pixel, rgb_caps, stride, MASK_META};

/// The fixed input size of `fixed_*.onnx` and `chain_segment.onnx`.
const FW: usize = 64;
const FH: usize = 32;
/// The position-grid labels of `fixed_*.onnx`: [1, GH, GW], id = GW * row + column.
const GW: usize = 8;
const GH: usize = 4;
const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// An RGB frame w x h whose pixel (x, y) is `f(x, y)`; timestamps 40 ms apart, offset `i`.
fn rgb_buffer(i: usize, w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> gst::Buffer {
    let s = stride(w, 3);
    let mut data = vec![0u8; s * h];
    for y in 0..h {
        for x in 0..w {
            data[y * s + x * 3..y * s + x * 3 + 3].copy_from_slice(&f(x, y));
        }
    }
    stamped(data, i)
}

fn stamped(data: Vec<u8>, i: usize) -> gst::Buffer {
    init();
    let mut b = gst::Buffer::from_mut_slice(data);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(40 * i as u64));
        b.set_duration(gst::ClockTime::from_mseconds(40));
        b.set_offset(i as u64);
    }
    b
}

/// Pixel (x, y) of an RGB buffer.
fn rgb_at(map: &[u8], w: usize, x: usize, y: usize) -> [u8; 3] {
    let o = y * stride(w, 3) + x * 3;
    [map[o], map[o + 1], map[o + 2]]
}

/// A [0,1] value as the byte the element writes (rounded, clamped).
fn byte(v: f64) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn assert_near(got: [u8; 3], want: [u8; 3], what: &str) {
    for c in 0..3 {
        assert!(
            (got[c] as i32 - want[c] as i32).abs() <= 1,
            "{what}: got {got:?}, want {want:?} (±1)"
        );
    }
}

/// Index of the largest value, the first on ties.
fn argmax_f(v: &[f64]) -> usize {
    let mut best = 0;
    for c in 1..v.len() {
        if v[c] > v[best] {
            best = c;
        }
    }
    best
}

/// The gap between the largest and the second largest value.
fn margin(v: &[f64]) -> f64 {
    let best = argmax_f(v);
    v.iter()
        .enumerate()
        .filter(|(c, _)| *c != best)
        .map(|(_, x)| v[best] - x)
        .fold(f64::INFINITY, f64::min)
}

/// Where a frame `width` x `height` lands in a fixed model input FW x FH: the box
/// (x0, y0, sw, sh) it is resized to.
#[derive(Clone, Copy, Debug)]
struct Fit {
    x0: usize,
    y0: usize,
    sw: usize,
    sh: usize,
}

fn fit(width: usize, height: usize, letterbox: bool) -> Fit {
    if !letterbox {
        return Fit {
            x0: 0,
            y0: 0,
            sw: FW,
            sh: FH,
        };
    }
    let k = (FW as f64 / width as f64).min(FH as f64 / height as f64);
    let (sw, sh) = (
        (width as f64 * k).round() as usize,
        (height as f64 * k).round() as usize,
    );
    Fit {
        x0: (FW - sw) / 2,
        y0: (FH - sh) / 2,
        sw,
        sh,
    }
}

/// Bilinear sample (align_corners=False) of plane `p` (w x h) at source coordinates
/// (sx, sy), each clamped to the plane.
fn bilinear(p: &[f64], w: usize, h: usize, sx: f64, sy: f64) -> f64 {
    let sx = sx.clamp(0.0, (w - 1) as f64);
    let sy = sy.clamp(0.0, (h - 1) as f64);
    let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
    let top = p[y0 * w + x0] * (1.0 - fx) + p[y0 * w + x1] * fx;
    let bottom = p[y1 * w + x0] * (1.0 - fx) + p[y1 * w + x1] * fx;
    top * (1.0 - fy) + bottom * fy
}

/// The model input planes FW x FH (RGB, pixel / 255, before any mean/std) of a frame
/// given as three planes of [0,1] values, by the contract's stretch or letterbox rule;
/// the letterbox padding is 0.
fn to_model(planes: &[Vec<f64>; 3], width: usize, height: usize, f: Fit) -> [Vec<f64>; 3] {
    planes.clone().map(|p| {
        let mut m = vec![0.0; FW * FH];
        for dy in f.y0..f.y0 + f.sh {
            let sy = (dy - f.y0) as f64 + 0.5;
            let sy = sy * height as f64 / f.sh as f64 - 0.5;
            for dx in f.x0..f.x0 + f.sw {
                let sx = ((dx - f.x0) as f64 + 0.5) * width as f64 / f.sw as f64 - 0.5;
                m[dy * FW + dx] = bilinear(&p, width, height, sx, sy);
            }
        }
        m
    })
}

/// The model-grid coordinate a frame pixel `d` takes the denoised value from
/// (bilinear), clamped to the box the frame was resized to: with letterbox the padding
/// never reaches the output, even where the box is smaller than the frame (where the
/// unclamped coordinate of the first and last pixels lies up to half a model pixel
/// outside the box).
fn back_coord(d: usize, frame_len: usize, box_start: usize, box_len: usize) -> f64 {
    let s = box_start as f64 + (d as f64 + 0.5) * box_len as f64 / frame_len as f64 - 0.5;
    s.clamp(box_start as f64, (box_start + box_len - 1) as f64)
}

/// The label index a frame pixel `d` takes from a label grid `labels_len` wide over a
/// model input `model_len` wide (nearest).
fn label_index(
    d: usize,
    frame_len: usize,
    box_start: usize,
    box_len: usize,
    model_len: usize,
    labels_len: usize,
) -> usize {
    let r = labels_len as f64 / model_len as f64;
    let i = ((d as f64 + 0.5) * box_len as f64 / frame_len as f64 * r + box_start as f64 * r).floor();
    (i.max(0.0) as usize).min(labels_len - 1)
}

/// The three planes (R, G, B on [0,1]) of a w x h frame given by `f`.
fn planes_of(w: usize, h: usize, f: impl Fn(usize, usize) -> [u8; 3]) -> [Vec<f64>; 3] {
    let mut p = [vec![0.0; w * h], vec![0.0; w * h], vec![0.0; w * h]];
    for y in 0..h {
        for x in 0..w {
            let px = f(x, y);
            for c in 0..3 {
                p[c][y * w + x] = px[c] as f64 / 255.0;
            }
        }
    }
    p
}

/// What `fixed_stretch.onnx` / `fixed_letterbox.onnx` give a frame w x h of content
/// planes `p`: per pixel the expected RGB (denoised = 1 - image, mapped there and back)
/// and the class id (the position grid's cell).
fn expect_fixed(p: &[Vec<f64>; 3], w: usize, h: usize, letterbox: bool) -> (Vec<[u8; 3]>, Vec<u8>) {
    let f = fit(w, h, letterbox);
    let m = to_model(p, w, h, f);
    let den = m.map(|c| c.iter().map(|v| 1.0 - v).collect::<Vec<_>>());
    let mut rgb = Vec::with_capacity(w * h);
    let mut ids = Vec::with_capacity(w * h);
    for y in 0..h {
        let sy = back_coord(y, h, f.y0, f.sh);
        let ly = label_index(y, h, f.y0, f.sh, FH, GH);
        for x in 0..w {
            let sx = back_coord(x, w, f.x0, f.sw);
            rgb.push([0, 1, 2].map(|c| byte(bilinear(&den[c], FW, FH, sx, sy))));
            ids.push((GW * ly + label_index(x, w, f.x0, f.sw, FW, GW)) as u8);
        }
    }
    (rgb, ids)
}

/// A smooth-ish colourful pattern for frame `i` (so resampling shows).
fn pattern(i: usize, w: usize, h: usize) -> impl Fn(usize, usize) -> [u8; 3] {
    move |x, y| {
        [
            (20 + (x * 215) / w.max(2) + i) as u8,
            (30 + (y * 200) / h.max(2)) as u8,
            (((x + 2 * y + 7 * i) * 9) % 256) as u8,
        ]
    }
}

/// Checks one output buffer of a fixed-size model against `expect_fixed`.
fn check_fixed(out: &gst::BufferRef, i: usize, w: usize, h: usize, want: &(Vec<[u8; 3]>, Vec<u8>), what: &str) {
    assert_eq!(
        out.pts(),
        Some(gst::ClockTime::from_mseconds(40 * i as u64)),
        "{what}: pts"
    );
    assert_eq!(out.offset(), i as u64, "{what}: order");
    let map = out.map_readable().unwrap();
    let (mask, ms) = mask_of(out);
    assert_eq!(mask_meta_count(out), 1, "{what}: one class map meta");
    for y in 0..h {
        for x in 0..w {
            assert_near(
                rgb_at(&map, w, x, y),
                want.0[y * w + x],
                &format!("{what}: pixel ({x},{y})"),
            );
            assert_eq!(mask[y * ms + x], want.1[y * w + x], "{what}: class at ({x},{y})");
        }
    }
}

/// The first error the element posted on `bus`, as text.
fn error_on(bus: &gst::Bus) -> Option<String> {
    bus.pop_filtered(&[gst::MessageType::Error]).map(|m| match m.view() {
        gst::MessageView::Error(e) => format!("{} | {:?}", e.error(), e.debug()),
        _ => unreachable!(),
    })
}

/// A `denoiseseg` with the test model `name` and `props`, its messages on the returned
/// bus. Panics with the element's error when it cannot start (a model the engine
/// refuses), rather than letting the Harness abort the whole test binary.
fn started(name: &str, props: &[(&str, &str)]) -> (gst::Element, gst::Bus) {
    let e = element(name, props);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let ok = e.set_state(gst::State::Paused).is_ok();
    let err = error_on(&bus);
    let _ = e.set_state(gst::State::Null);
    assert!(ok && err.is_none(), "{name} does not start: {err:?}");
    (e, bus)
}

/// Pushes `frames` through a `denoiseseg` with the test model `name` and `props`, pulls
/// as many outputs, in order.
fn run(name: &str, props: &[(&str, &str)], caps: &str, frames: Vec<gst::Buffer>) -> Vec<gst::Buffer> {
    let (e, bus) = started(name, props);
    let mut hs = harness(&e, caps);
    let n = frames.len();
    for b in frames {
        let flow = hs.push(b);
        assert_eq!(flow, Ok(gst::FlowSuccess::Ok), "{name}: {:?}", error_on(&bus));
    }
    (0..n)
        .map(|i| {
            hs.pull()
                .unwrap_or_else(|_| panic!("{name}: no output frame {i}: {:?}", error_on(&bus)))
        })
        .collect()
}

fn palette_of(out: &gst::BufferRef) -> (u32, Vec<u8>) {
    let meta = gst::meta::CustomMeta::from_buffer(out, MASK_META).unwrap();
    let s = meta.structure();
    let palette = s.get::<gst::glib::Bytes>("palette").unwrap().to_vec();
    (s.get::<u32>("classes").unwrap(), palette)
}

#[test]
fn bgr_model_gets_blue_first_and_its_output_is_reordered_to_rgb() {
    // bgr.onnx: denoised = image * [0.5, 1, -1] + [0, 0, 1] on (B, G, R); labels = argmax
    // over (B, G, R), classes 0 blue, 1 green, 2 red. 21x13 is not a multiple of 4.
    let (w, h) = (21, 13);
    let outs = run(
        "bgr.onnx",
        &[],
        &rgb_caps(w, h),
        (0..2).map(|i| rgb_buffer(i, w, h, |x, y| pixel(i, x, y))).collect(),
    );
    let mut reds = 0;
    for (i, out) in outs.iter().enumerate() {
        let map = out.map_readable().unwrap();
        let (mask, ms) = mask_of(out);
        for y in 0..h {
            for x in 0..w {
                let [r, g, b] = pixel(i, x, y);
                let want = [255 - r, g, byte(b as f64 / 255.0 * 0.5)];
                assert_near(rgb_at(&map, w, x, y), want, &format!("frame {i} ({x},{y})"));
                let class = argmax_f(&[b as f64, g as f64, r as f64]) as u8;
                reds += (class == 2) as usize;
                assert_eq!(
                    mask[y * ms + x],
                    class,
                    "frame {i} class at ({x},{y}) of {:?}",
                    [r, g, b]
                );
            }
        }
    }
    assert!(reds > 20, "red-dominant pixels are class 2 (red), not 0: {reds}");
    assert_eq!(
        palette_of(&outs[0]),
        (3, vec![0, 0, 255, 0, 255, 0, 255, 0, 0]),
        "the sidecar's palette"
    );
}

#[test]
fn nhwc_model_with_int32_labels_and_batches() {
    // nhwc.onnx: [N,H,W,3], denoised = image * [-1, 0.5, 1] + [1, 0, 0], labels int32 =
    // argmax over (R, G, B). size_multiple 8: 21x13 is padded to 24x16 and cropped back.
    let (w, h) = (21, 13);
    let n = 5;
    let outs = run(
        "nhwc.onnx",
        &[("batch-size", "2"), ("batch-timeout", "50")],
        &rgb_caps(w, h),
        (0..n).map(|i| rgb_buffer(i, w, h, |x, y| pixel(i, x, y))).collect(),
    );
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(out.offset(), i as u64, "order");
        let map = out.map_readable().unwrap();
        let (mask, ms) = mask_of(out);
        for y in 0..h {
            for x in 0..w {
                let p = pixel(i, x, y);
                let want = [255 - p[0], byte(p[1] as f64 / 255.0 * 0.5), p[2]];
                assert_near(rgb_at(&map, w, x, y), want, &format!("frame {i} ({x},{y})"));
                assert_eq!(mask[y * ms + x], argmax(p), "frame {i} class at ({x},{y})");
            }
        }
    }
}

#[test]
fn imagenet_normalization_is_applied_and_undone() {
    // imagenet.onnx: denoised = -v in the normalized space, so a pixel p comes back as
    // 2 * mean - p; labels = argmax of (p / 255 - mean) / std. Row 0 is mid grey, whose
    // raw channels tie (class 0) but whose normalized blue is the largest (class 2).
    let (w, h) = (17, 9);
    let content = |x: usize, y: usize| if y == 0 { [128, 128, 128] } else { pixel(3, x, y) };
    let outs = run(
        "imagenet.onnx",
        &[],
        &rgb_caps(w, h),
        vec![rgb_buffer(0, w, h, content)],
    );
    let out = &outs[0];
    let map = out.map_readable().unwrap();
    let (mask, ms) = mask_of(out);
    let (mut checked, mut differs) = (0, 0);
    for y in 0..h {
        for x in 0..w {
            let p = content(x, y);
            let want = [0, 1, 2].map(|c| byte(2.0 * IMAGENET_MEAN[c] - p[c] as f64 / 255.0));
            assert_near(rgb_at(&map, w, x, y), want, &format!("({x},{y}) of {p:?}"));
            let v: Vec<f64> = (0..3)
                .map(|c| (p[c] as f64 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
                .collect();
            if margin(&v) < 1e-4 {
                continue; // a near tie: either class is right within f32
            }
            checked += 1;
            differs += (argmax_f(&v) as u8 != argmax(p)) as usize;
            assert_eq!(mask[y * ms + x], argmax_f(&v) as u8, "class at ({x},{y}) of {p:?}");
        }
    }
    assert_eq!(mask[1], 2, "mid grey is blue after normalization");
    assert!(
        checked > w * h * 9 / 10 && differs >= w,
        "{checked} checked, {differs} differ from raw argmax"
    );
}

#[test]
fn fixed_size_stretch_maps_frames_there_and_back() {
    // fixed_stretch.onnx: [1,3,32,64]; frames of other sizes and aspect ratios are
    // stretched (bilinear, align_corners=False) and mapped back; the int64 labels are a
    // 4x8 position grid, so each frame pixel's class says which cell it was mapped to.
    for (w, h) in [(50, 30), (100, 45), (64, 32), (13, 7)] {
        let frames: Vec<_> = (0..2).map(|i| rgb_buffer(i, w, h, pattern(i, w, h))).collect();
        let outs = run("fixed_stretch.onnx", &[], &rgb_caps(w, h), frames);
        for (i, out) in outs.iter().enumerate() {
            let want = expect_fixed(&planes_of(w, h, pattern(i, w, h)), w, h, false);
            check_fixed(out, i, w, h, &want, &format!("{w}x{h} frame {i}"));
        }
    }
}

#[test]
fn fixed_size_letterbox_keeps_the_aspect_ratio() {
    // 50x30 -> 53x32 at x0 = 5; 40x40 -> 32x32 at x0 = 16; 100x20 -> 64x13 at y0 = 9.
    for (w, h) in [(50, 30), (40, 40), (100, 20)] {
        let f = fit(w, h, true);
        assert!(f.x0 > 0 || f.y0 > 0, "{w}x{h} is letterboxed: {f:?}");
        let frames: Vec<_> = (0..2).map(|i| rgb_buffer(i, w, h, pattern(i, w, h))).collect();
        let outs = run("fixed_letterbox.onnx", &[], &rgb_caps(w, h), frames);
        for (i, out) in outs.iter().enumerate() {
            let want = expect_fixed(&planes_of(w, h, pattern(i, w, h)), w, h, true);
            check_fixed(out, i, w, h, &want, &format!("{w}x{h} frame {i}"));
        }
    }
}

#[test]
fn fixed_size_letterbox_logits_at_a_lower_resolution() {
    // fixed_logits.onnx: logits [1,32,4,8] over the whole 64x32 input, channel 8r + c =
    // [row r] + [column c]: the class says which logits cell each pixel's coordinate
    // is nearest to. The frame passes through unchanged (no denoised output).
    for (w, h) in [(50, 30), (40, 40), (100, 20), (37, 11)] {
        let f = fit(w, h, true);
        let frame = rgb_buffer(0, w, h, pattern(0, w, h));
        let input = frame.map_readable().unwrap().to_vec();
        let outs = run("fixed_logits.onnx", &[], &rgb_caps(w, h), vec![frame]);
        let out = &outs[0];
        assert_eq!(
            &*out.map_readable().unwrap(),
            &input[..],
            "{w}x{h}: the frame passes through"
        );
        let (mask, ms) = mask_of(out);
        let mut checked = 0;
        for y in 0..h {
            for x in 0..w {
                let (Some(r), Some(c)) = (
                    logits_cell(y, h, f.y0, f.sh, FH, GH),
                    logits_cell(x, w, f.x0, f.sw, FW, GW),
                ) else {
                    continue;
                };
                checked += 1;
                assert_eq!(
                    mask[y * ms + x] as usize,
                    GW * r + c,
                    "{w}x{h} {f:?}: class at ({x},{y})"
                );
            }
        }
        assert!(checked > w * h * 3 / 4, "{w}x{h}: {checked} checked");
    }
}

#[test]
fn letterbox_padding_never_reaches_the_output() {
    // A white frame: inside the box the model gives 0 (black); the padding is black,
    // so the model gives 1 there: any non-black output pixel is padding leaking in,
    // also at the first and last rows and columns when the box is smaller than the
    // frame (40x40 -> 32x32, 100x20 -> 64x13).
    for (w, h) in [(50, 30), (40, 40), (100, 20)] {
        let outs = run(
            "fixed_letterbox.onnx",
            &[],
            &rgb_caps(w, h),
            vec![rgb_buffer(0, w, h, |_, _| [255; 3])],
        );
        let map = outs[0].map_readable().unwrap();
        for y in 0..h {
            for x in 0..w {
                assert_eq!(rgb_at(&map, w, x, y), [0; 3], "{w}x{h}: padding leaks into ({x},{y})");
            }
        }
    }
}

/// The logits grid cell (of `cells` over a model input `model_len` wide) a frame pixel
/// `d` gets: logits coordinate s = (box_start + (d + 0.5) * box_len / frame_len) *
/// cells / model_len - 0.5, clamped; with one-hot cells the bilinear argmax is the
/// nearer cell, the lower one on a tie. None within f32 rounding of a tie.
fn logits_cell(
    d: usize,
    frame_len: usize,
    box_start: usize,
    box_len: usize,
    model_len: usize,
    cells: usize,
) -> Option<usize> {
    let s = (box_start as f64 + (d as f64 + 0.5) * box_len as f64 / frame_len as f64) * cells as f64 / model_len as f64
        - 0.5;
    let s = s.clamp(0.0, (cells - 1) as f64);
    let (j0, f) = (s.floor() as usize, s - s.floor());
    if (f - 0.5).abs() < 1e-4 {
        return None;
    }
    Some(if f > 0.5 { (j0 + 1).min(cells - 1) } else { j0 })
}

#[test]
fn fixed_batch_one_model_under_batch_size_two_keeps_every_frame_and_the_order() {
    let (w, h) = (50, 30);
    let n = 7;
    let frames: Vec<_> = (0..n).map(|i| rgb_buffer(i, w, h, pattern(i, w, h))).collect();
    let (e, bus) = started(
        "fixed_stretch.onnx",
        &[("batch-size", "2"), ("batch-timeout", "100"), ("workers", "2")],
    );
    let mut hs = harness(&e, &rgb_caps(w, h));
    for b in frames {
        assert_eq!(hs.push(b), Ok(gst::FlowSuccess::Ok), "{:?}", error_on(&bus));
    }
    for i in 0..n {
        let out = hs
            .pull()
            .unwrap_or_else(|_| panic!("no frame {i}: {:?}", error_on(&bus)));
        let want = expect_fixed(&planes_of(w, h, pattern(i, w, h)), w, h, false);
        check_fixed(&out, i, w, h, &want, &format!("frame {i}"));
    }
    assert_eq!(e.property::<u64>("frames-processed"), n as u64);
}

#[test]
fn fixed_size_model_on_i420_frames() {
    // Grey I420 (U = V = 128): R = G = B = (Y - 16) / 219 whatever the matrix, and the
    // output's luma is 16 + 219 * (1 - that, resampled). The class map does not depend
    // on the colours at all.
    init();
    let (w, h) = (50, 30);
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w as u32, h as u32)
        .fps(gst::Fraction::new(25, 1))
        .build()
        .unwrap();
    let luma = |x: usize, y: usize| (16 + (x * 4 + y * 3) % 220) as u8;
    let mut data = vec![128u8; info.size()];
    let (y_off, y_stride) = (info.offset()[0], info.stride()[0] as usize);
    for y in 0..h {
        for x in 0..w {
            data[y_off + y * y_stride + x] = luma(x, y);
        }
    }
    let (e, bus) = started("fixed_letterbox.onnx", &[]);
    let mut hs = gst_check::Harness::with_element(&e, Some("sink"), Some("src"));
    hs.set_src_caps(info.to_caps().unwrap());
    hs.play();
    assert_eq!(
        hs.push(stamped(data, 0)),
        Ok(gst::FlowSuccess::Ok),
        "{:?}",
        error_on(&bus)
    );
    let out = hs.pull().unwrap_or_else(|_| panic!("no frame: {:?}", error_on(&bus)));
    let f = fit(w, h, true);
    // The model input: R = G = B = the decoded luma.
    let mut decoded = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            decoded[y * w + x] = (luma(x, y) as f64 - 16.0) / 219.0;
        }
    }
    let plane0 = to_model(&[decoded.clone(), decoded.clone(), decoded], w, h, f)[0].clone();
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(out.as_ref(), &info).unwrap();
    let (y_plane, ys) = (frame.plane_data(0).unwrap(), info.stride()[0] as usize);
    let (mask, ms) = mask_of(&out);
    for y in 0..h {
        for x in 0..w {
            let g = 1.0
                - bilinear(
                    &plane0,
                    FW,
                    FH,
                    back_coord(x, w, f.x0, f.sw),
                    back_coord(y, h, f.y0, f.sh),
                );
            let want = 16.0 + 219.0 * g.clamp(0.0, 1.0);
            let got = y_plane[y * ys + x] as f64;
            assert!((got - want).abs() <= 1.0, "Y at ({x},{y}): got {got}, want {want:.2}");
            let id = GW * label_index(y, h, f.y0, f.sh, FH, GH) + label_index(x, w, f.x0, f.sw, FW, GW);
            assert_eq!(mask[y * ms + x] as usize, id, "class at ({x},{y})");
        }
    }
    let u = frame.plane_data(1).unwrap();
    assert!(
        u[..w / 2].iter().all(|&c| (c as i32 - 128).abs() <= 1),
        "grey stays grey"
    );
}

/// Runs `appsrc ! <middle> ! appsink` (the last element of `middle` named `last`, its
/// `mask` pad to a second appsink when `with_mask`) on RGB frames; returns the src
/// buffers and the mask buffers.
fn run_chain(
    middle: &str,
    w: usize,
    h: usize,
    frames: Vec<gst::Buffer>,
    with_mask: bool,
) -> (Vec<gst::Buffer>, Vec<gst::Buffer>) {
    init();
    let mask_branch = if with_mask {
        " last.mask ! queue ! appsink name=mask sync=false"
    } else {
        ""
    };
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps={caps} ! {middle} ! queue ! appsink name=out sync=false{mask_branch}",
        caps = rgb_caps(w, h).replace(',', "\\,"),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    let sink = |name: &str| {
        pipeline
            .by_name(name)
            .map(|s| s.downcast::<gst_app::AppSink>().unwrap())
    };
    let (out, mask) = (sink("out").unwrap(), sink("mask"));
    let bus = pipeline.bus().unwrap();
    if pipeline.set_state(gst::State::Playing).is_err() {
        let err = error_on(&bus);
        let _ = pipeline.set_state(gst::State::Null);
        panic!("the pipeline does not start: {err:?}");
    }
    for b in frames {
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    let pull = |s: &gst_app::AppSink| {
        let mut v = Vec::new();
        // None at EOS, or after 30 s without a frame (an error stops the stream).
        while let Some(sample) = s.try_pull_sample(gst::ClockTime::from_seconds(30)) {
            v.push(sample.buffer_owned().unwrap());
        }
        v
    };
    let outs = pull(&out);
    let masks = mask.as_ref().map(pull).unwrap_or_default();
    let err = error_on(&bus);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(err.is_none(), "pipeline error: {err:?}");
    (outs, masks)
}

fn dseg(name: &str, model_name: &str) -> String {
    format!(
        "denoiseseg name={name} model={m} execution-provider=cpu class-confirm-frames=1",
        m = model(model_name)
    )
}

/// What chain_denoise.onnx makes of a pixel: R kept, G inverted, B halved plus 0.25.
fn chain_denoised(p: [u8; 3]) -> [u8; 3] {
    let v = p.map(|c| c as f64 / 255.0);
    [byte(v[0]), byte(1.0 - v[1]), byte(0.5 * v[2] + 0.25)]
}

#[test]
fn chain_of_a_denoiser_and_a_segmenter_gives_the_first_frame_and_the_second_map() {
    // chain_denoise.onnx (denoise only) ! chain_segment.onnx (segment only: fixed
    // [1,32,64,3], BGR, ImageNet mean/std, stretch, int32 labels = argmax over the
    // normalized B, G, R). 50x30 frames: stretched to 64x32 for the segmenter.
    let (w, h) = (50, 30);
    let n = 3;
    // Colour blocks, so most classes are clear after the stretch; varied per frame.
    let content = |i: usize| {
        move |x: usize, y: usize| -> [u8; 3] {
            let cell = (x / 10 + y / 10 + i) % 4;
            [[230, 40, 60], [30, 200, 40], [20, 250, 250], [90, 60, 10]][cell]
        }
    };
    let frames = (0..n).map(|i| rgb_buffer(i, w, h, content(i))).collect();
    let middle = format!(
        "{} ! {}",
        dseg("first", "chain_denoise.onnx"),
        dseg("last", "chain_segment.onnx")
    );
    let (outs, masks) = run_chain(&middle, w, h, frames, true);
    assert_eq!(outs.len(), n);
    assert_eq!(masks.len(), n);
    let mean = [IMAGENET_MEAN[2], IMAGENET_MEAN[1], IMAGENET_MEAN[0]];
    let std = [IMAGENET_STD[2], IMAGENET_STD[1], IMAGENET_STD[0]];
    let mut seen = [0usize; 3];
    for (i, (out, mask_buf)) in outs.iter().zip(&masks).enumerate() {
        assert_eq!(out.offset(), i as u64);
        assert_eq!(mask_buf.pts(), out.pts());
        let map = out.map_readable().unwrap();
        // The frame is the denoiser's; the segmenter passed it through unchanged.
        for y in 0..h {
            for x in 0..w {
                let want = chain_denoised(content(i)(x, y));
                assert_near(rgb_at(&map, w, x, y), want, &format!("frame {i} ({x},{y})"));
            }
        }
        // The class map is the segmenter's, computed from the frame it saw (= the output).
        assert_eq!(mask_meta_count(out), 1, "one class map meta");
        assert_eq!(palette_of(out), (3, vec![0, 0, 255, 0, 255, 0, 255, 0, 0]));
        let (mask, ms) = mask_of(out);
        let pad_mask = mask_buf.map_readable().unwrap();
        let p = planes_of(w, h, |x, y| rgb_at(&map, w, x, y));
        let m = to_model(&p, w, h, fit(w, h, false));
        let mut checked = 0;
        for y in 0..h {
            let my = label_index(y, h, 0, FH, FH, FH);
            for x in 0..w {
                let mx = label_index(x, w, 0, FW, FW, FW);
                // Model channel order B, G, R.
                let v: Vec<f64> = (0..3).map(|c| (m[2 - c][my * FW + mx] - mean[c]) / std[c]).collect();
                assert_eq!(pad_mask[y * stride(w, 1) + x], mask[y * ms + x], "mask pad = meta");
                if margin(&v) < 1e-4 {
                    continue;
                }
                let class = argmax_f(&v);
                seen[class] += 1;
                checked += 1;
                assert_eq!(mask[y * ms + x] as usize, class, "frame {i} class at ({x},{y})");
            }
        }
        assert!(checked > w * h * 9 / 10, "{checked} of {} checked", w * h);
    }
    assert!(seen.iter().all(|&s| s > 50), "every class appears: {seen:?}");
}

/// 4x4 blocks for seg_logits.onnx: red-, green-, blue-dominant and dark grey (class 3).
const BLOCKS: [[u8; 3]; 4] = [[230, 20, 20], [20, 230, 20], [20, 20, 230], [60, 60, 60]];

#[test]
fn a_second_segmenting_element_replaces_the_class_map_meta() {
    // joint.onnx (denoised = 1 - image, classes red, green, blue) ! seg_logits.onnx
    // (segmentation only, 4 classes): the frame is joint's, the one meta seg_logits'.
    let (w, h) = (16, 4);
    let content = |x: usize, _y: usize| BLOCKS[x / 4].map(|v| 255 - v);
    let middle = format!("{} ! {}", dseg("first", "joint.onnx"), dseg("last", "seg_logits.onnx"));
    let (outs, masks) = run_chain(&middle, w, h, vec![rgb_buffer(0, w, h, content)], true);
    let out = &outs[0];
    let map = out.map_readable().unwrap();
    for y in 0..h {
        for x in 0..w {
            assert_eq!(rgb_at(&map, w, x, y), BLOCKS[x / 4], "joint's frame at ({x},{y})");
        }
    }
    assert_eq!(mask_meta_count(out), 1, "one class map meta per buffer");
    let (classes, palette) = palette_of(out);
    assert_eq!(classes, 4, "the second element's classes");
    assert_eq!(&palette[9..12], &[128, 128, 128]);
    let (mask, ms) = mask_of(out);
    let pad = masks[0].map_readable().unwrap();
    for y in 0..h {
        for (block, x) in [1usize, 6, 9, 14].iter().enumerate() {
            assert_eq!(mask[y * ms + x], block as u8, "seg_logits' class at ({x},{y})");
            assert_eq!(pad[y * stride(w, 1) + x], block as u8, "mask pad at ({x},{y})");
        }
    }
}

#[test]
fn a_denoise_only_element_adds_no_meta_and_keeps_an_upstream_one() {
    let (w, h) = (12, 6);
    let frame = || rgb_buffer(0, w, h, |x, y| pixel(0, x, y));
    // Alone (or first in a chain): no class map, so no meta.
    let (outs, _) = run_chain(&dseg("last", "chain_denoise.onnx"), w, h, vec![frame()], false);
    assert_eq!(mask_meta_count(&outs[0]), 0, "a denoise-only element attaches no meta");
    let map = outs[0].map_readable().unwrap();
    for y in 0..h {
        for x in 0..w {
            assert_near(rgb_at(&map, w, x, y), chain_denoised(pixel(0, x, y)), "denoised");
        }
    }
    // After a segmenting element: the upstream class map still describes the frame and
    // travels on, the frame is denoised again.
    let middle = format!(
        "{} ! {}",
        dseg("first", "joint.onnx"),
        dseg("last", "chain_denoise.onnx")
    );
    let (outs, _) = run_chain(&middle, w, h, vec![frame()], false);
    let out = &outs[0];
    assert_eq!(mask_meta_count(out), 1, "joint's meta carried through");
    assert_eq!(palette_of(out).0, 3);
    let (mask, ms) = mask_of(out);
    let map = out.map_readable().unwrap();
    for y in 0..h {
        for x in 0..w {
            let p = pixel(0, x, y);
            assert_eq!(mask[y * ms + x], argmax(p), "joint's class at ({x},{y})");
            let want = chain_denoised(p.map(|v| 255 - v));
            assert_near(rgb_at(&map, w, x, y), want, &format!("({x},{y})"));
        }
    }
}
