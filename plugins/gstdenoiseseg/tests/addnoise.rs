//! Harness tests of the `addnoise` element.
use std::str::FromStr;

use denoiseseg::noise::{add_noise_interleaved, NoiseParams};
use gst::glib;
mod common;
use common::init;
use gst::prelude::*;
use gst_base::prelude::*;
use gst_check::Harness;

/// An `addnoise` with the given properties (set before the harness starts it) fed
/// `format` frames of `width`×`height`.
fn harness(props: &[(&str, &str)], format: &str, width: u32, height: u32) -> Harness {
    init();
    let mut builder = gst::ElementFactory::make("addnoise");
    for &(name, value) in props {
        builder = builder.property_from_str(name, value);
    }
    let element = builder.build().expect("make addnoise");
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str(&format!(
        "video/x-raw,format={format},width={width},height={height},framerate=30/1"
    ));
    h
}

fn info(format: &str, width: u32, height: u32) -> gst_video::VideoInfo {
    init();
    let format = gst_video::VideoFormat::from_string(format);
    gst_video::VideoInfo::builder(format, width, height)
        .build()
        .expect("video info")
}

/// A frame buffer holding `data`, stamped as frame `n` of a 30 fps stream.
fn buffer(data: Vec<u8>, n: u64) -> gst::Buffer {
    let mut buf = gst::Buffer::from_mut_slice(data);
    {
        let b = buf.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(n * 1000 / 30));
        b.set_dts(gst::ClockTime::from_mseconds(n * 1000 / 30));
        b.set_duration(gst::ClockTime::from_mseconds(33));
        b.set_offset(n);
    }
    buf
}

/// A textured frame of `info`'s size: every byte (padding included) is set.
fn textured(info: &gst_video::VideoInfo) -> Vec<u8> {
    (0..info.size()).map(|i| (40 + (i * 13) % 170) as u8).collect()
}

fn push_pull(h: &mut Harness, buf: gst::Buffer) -> Vec<u8> {
    assert_eq!(h.push(buf), Ok(gst::FlowSuccess::Ok));
    let out = h.pull().expect("an output buffer");
    let data = out.map_readable().expect("readable").to_vec();
    data
}

fn mean_std(values: impl Iterator<Item = u8>) -> (f64, f64) {
    let (mut n, mut s, mut s2) = (0.0, 0.0, 0.0);
    for v in values {
        let v = v as f64;
        n += 1.0;
        s += v;
        s2 += v * v;
    }
    let mean = s / n;
    (mean, (s2 / n - mean * mean).sqrt())
}

#[test]
fn gaussian_std_matches_sigma_on_flat_grey() {
    for sigma in [5.0f64, 10.0, 30.0] {
        let (w, h_) = (160, 120);
        let inf = info("RGB", w, h_);
        let mut h = harness(&[("sigma", &sigma.to_string())], "RGB", w, h_);
        let out = push_pull(&mut h, buffer(vec![128; inf.size()], 0));
        let (mean, std) = mean_std(out.into_iter());
        // Rounding to integers adds a variance of 1/12.
        let want = (sigma * sigma + 1.0 / 12.0).sqrt();
        assert!((mean - 128.0).abs() < 0.3, "sigma {sigma}: mean {mean}");
        assert!((std / want - 1.0).abs() < 0.03, "sigma {sigma}: std {std}, want {want}");
    }
}

#[test]
fn poisson_gaussian_std_matches_model() {
    let (w, h_) = (160, 120);
    let inf = info("GRAY8", w, h_);
    let props = [("mode", "poisson-gaussian"), ("sigma", "3"), ("gain", "2")];
    let mut h = harness(&props, "GRAY8", w, h_);
    for (n, value) in [50u8, 128, 200].into_iter().enumerate() {
        let out = push_pull(&mut h, buffer(vec![value; inf.size()], n as u64));
        let (mean, std) = mean_std(out.into_iter());
        let want = (9.0 + 2.0 * value as f64 + 1.0 / 12.0).sqrt();
        assert!((mean - value as f64).abs() < 0.5, "value {value}: mean {mean}");
        assert!((std / want - 1.0).abs() < 0.04, "value {value}: std {std}, want {want}");
    }
}

/// The nick of the element's `mode`.
fn mode_nick(element: &gst::Element) -> String {
    let value = element.property_value("mode");
    let (_, ev) = glib::EnumValue::from_value(&value).expect("an enum");
    ev.nick().to_string()
}

/// Pushes `frames` copies of a textured frame and returns the outputs.
fn run_stream(props: &[(&str, &str)], format: &str, frames: u64) -> Vec<Vec<u8>> {
    let (w, h_) = (37, 21);
    let inf = info(format, w, h_);
    let mut h = harness(props, format, w, h_);
    (0..frames)
        .map(|n| push_pull(&mut h, buffer(textured(&inf), n)))
        .collect()
}

#[test]
fn same_seed_same_output_and_frames_differ() {
    let props = [("sigma", "20.0"), ("seed", "1234")];
    let a = run_stream(&props, "RGBx", 3);
    let b = run_stream(&props, "RGBx", 3);
    assert!(a == b, "two runs with the same seed differ");
    assert_ne!(a[0], a[1], "frames 0 and 1");
    assert_ne!(a[1], a[2], "frames 1 and 2");
    let other = run_stream(&[("sigma", "20.0"), ("seed", "1235")], "RGBx", 1);
    assert_ne!(a[0], other[0], "another seed");
}

#[test]
fn output_matches_the_engine_frame_by_frame() {
    // The element's frame n is the engine's noise for (seed, n), drawn in R, G, B
    // order whatever the byte order of the format (BGRA: offsets 2, 1, 0).
    let (w, h_) = (37, 21);
    let inf = info("BGRA", w, h_);
    let outs = run_stream(&[("sigma", "12"), ("seed", "99")], "BGRA", 3);
    for (n, out) in outs.iter().enumerate() {
        let mut want = textured(&inf);
        add_noise_interleaved(
            &mut want,
            w as usize,
            h_ as usize,
            inf.stride()[0] as usize,
            4,
            &[2, 1, 0],
            &NoiseParams::gaussian(12.0),
            99,
            n as u64,
        );
        assert!(out == &want, "frame {n} differs from the engine's");
    }
}

#[test]
fn correlated_camera_noise_matches_the_engine_and_differs_from_white_noise() {
    // run_stream's frames are 37x21.
    let (w, h_) = (37, 21);
    let inf = info("RGB", w, h_);
    let camera = [
        ("mode", "poisson-gaussian"),
        ("sigma", "3"),
        ("gain", "2"),
        ("seed", "5"),
    ];
    let outs = run_stream(&[&camera[..], &[("correlation", "0.8")]].concat(), "RGB", 2);
    let white = run_stream(&camera, "RGB", 1);
    for (n, out) in outs.iter().enumerate() {
        let mut want = textured(&inf);
        let params = NoiseParams {
            correlation: 0.8,
            ..NoiseParams::poisson_gaussian(3.0, 2.0)
        };
        add_noise_interleaved(
            &mut want,
            w as usize,
            h_ as usize,
            inf.stride()[0] as usize,
            3,
            &[0, 1, 2],
            &params,
            5,
            n as u64,
        );
        assert!(out == &want, "frame {n} differs from the engine's");
    }
    assert_ne!(outs[0], white[0], "the correlation changes the noise");
}

#[test]
fn rgb_and_bgr_get_the_same_noise_per_colour() {
    let (w, h_) = (32, 8);
    let inf = info("RGB", w, h_);
    let rgb: Vec<u8> = textured(&inf);
    let bgr: Vec<u8> = rgb.chunks(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    let mut a = harness(&[("sigma", "30"), ("seed", "4")], "RGB", w, h_);
    let mut b = harness(&[("sigma", "30"), ("seed", "4")], "BGR", w, h_);
    let out_rgb = push_pull(&mut a, buffer(rgb, 0));
    let out_bgr = push_pull(&mut b, buffer(bgr, 0));
    let swapped: Vec<u8> = out_bgr.chunks(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    assert!(out_rgb == swapped);
}

#[test]
fn alpha_and_padding_bytes_are_untouched() {
    // (format, bytes per pixel, offsets of bytes that must not change)
    let cases: [(&str, usize, &[usize]); 6] = [
        ("RGBA", 4, &[3]),
        ("ARGB", 4, &[0]),
        ("ABGR", 4, &[0]),
        ("xRGB", 4, &[0]),
        ("BGRx", 4, &[3]),
        ("RGB", 3, &[]),
    ];
    for (format, bpp, fixed) in cases {
        let (w, h_) = (37, 21);
        let inf = info(format, w, h_);
        let stride = inf.stride()[0] as usize;
        let input = textured(&inf);
        let out = run_stream(&[("sigma", "60.0")], format, 1).remove(0);
        let mut changed = 0;
        for (i, (&a, &b)) in out.iter().zip(&input).enumerate() {
            let x = i % stride;
            let in_row = x < w as usize * bpp;
            if !in_row || fixed.contains(&(x % bpp)) {
                assert_eq!(a, b, "{format}: byte {x} of row {} changed", i / stride);
            } else if a != b {
                changed += 1;
            }
        }
        let colour_bytes = (w * h_) as usize * (bpp - fixed.len());
        assert!(changed > colour_bytes * 3 / 4, "{format}: only {changed} changed");
    }
    // GRAY8 at an odd width has row padding too.
    let inf = info("GRAY8", 37, 21);
    let out = run_stream(&[("sigma", "60.0")], "GRAY8", 1).remove(0);
    let input = textured(&inf);
    let stride = inf.stride()[0] as usize;
    assert!(stride > 37);
    for (i, (&a, &b)) in out.iter().zip(&input).enumerate() {
        if i % stride >= 37 {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn timestamps_and_flags_are_preserved() {
    let (w, h_) = (32, 16);
    let inf = info("RGB", w, h_);
    let mut h = harness(&[("sigma", "10.0")], "RGB", w, h_);
    for n in 0..4u64 {
        let mut buf = buffer(textured(&inf), n);
        let flags = if n == 0 {
            gst::BufferFlags::DISCONT
        } else {
            gst::BufferFlags::DELTA_UNIT
        };
        buf.get_mut().unwrap().set_flags(flags);
        let (pts, dts, dur) = (buf.pts(), buf.dts(), buf.duration());
        assert_eq!(h.push(buf), Ok(gst::FlowSuccess::Ok));
        let out = h.pull().unwrap();
        assert_eq!(out.pts(), pts);
        assert_eq!(out.dts(), dts);
        assert_eq!(out.duration(), dur);
        assert_eq!(out.offset(), n);
        assert!(out.flags().contains(flags), "frame {n}: {:?}", out.flags());
    }
}

#[test]
fn sigma_zero_is_a_passthrough() {
    let (w, h_) = (37, 21);
    let inf = info("RGBA", w, h_);
    let mut h = harness(&[("sigma", "0.0")], "RGBA", w, h_);
    let element = h.element().unwrap();
    let trans = element.downcast_ref::<gst_base::BaseTransform>().unwrap();
    assert!(trans.is_passthrough());
    for n in 0..3 {
        let input = textured(&inf);
        assert_eq!(push_pull(&mut h, buffer(input.clone(), n)), input);
    }
    // Poisson-Gaussian with no read noise still adds shot noise.
    element.set_property_from_str("mode", "poisson-gaussian");
    assert!(!trans.is_passthrough());
    let input = textured(&inf);
    assert_ne!(push_pull(&mut h, buffer(input.clone(), 3)), input);
    element.set_property("gain", 0.0f64);
    assert!(trans.is_passthrough());
    assert_eq!(push_pull(&mut h, buffer(input.clone(), 4)), input);
}

#[test]
fn frame_index_counts_passthrough_frames() {
    // sigma 10, then 0 (passthrough), then 10 again: the third frame gets the noise
    // of index 2, as if sigma had never changed.
    let (w, h_) = (37, 21);
    let inf = info("RGB", w, h_);
    let mut h = harness(&[("sigma", "10.0")], "RGB", w, h_);
    let element = h.element().unwrap();
    push_pull(&mut h, buffer(textured(&inf), 0));
    element.set_property("sigma", 0.0f64);
    push_pull(&mut h, buffer(textured(&inf), 1));
    element.set_property("sigma", 10.0f64);
    let third = push_pull(&mut h, buffer(textured(&inf), 2));
    let plain = run_stream(&[("sigma", "10.0")], "RGB", 3);
    assert!(third == plain[2], "the frame index shifted");
}

#[test]
fn flush_restarts_the_frame_index() {
    let props = [("sigma", "15.0"), ("seed", "5")];
    let (w, h_) = (37, 21);
    let inf = info("RGB", w, h_);
    let mut h = harness(&props, "RGB", w, h_);
    let first = push_pull(&mut h, buffer(textured(&inf), 0));
    let second = push_pull(&mut h, buffer(textured(&inf), 1));
    assert_ne!(first, second);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    let after = push_pull(&mut h, buffer(textured(&inf), 0));
    assert!(after == first, "the flush did not restart the index");
}

#[test]
fn properties_defaults_and_invalid_values() {
    init();
    let element = gst::ElementFactory::make("addnoise").build().unwrap();
    assert_eq!(element.property::<f64>("sigma"), 25.0);
    assert_eq!(element.property::<f64>("gain"), 1.0);
    assert_eq!(element.property::<f64>("correlation"), 0.0);
    assert_eq!(element.property::<u64>("seed"), 0);
    assert_eq!(mode_nick(&element), "gaussian");

    // The specs state the ranges...
    for (name, min, max) in [("sigma", 0.0, 255.0), ("gain", 0.0, 255.0), ("correlation", 0.0, 1.5)] {
        let pspec = element.find_property(name).unwrap();
        let pspec = pspec.downcast_ref::<glib::ParamSpecDouble>().unwrap();
        assert_eq!((pspec.minimum(), pspec.maximum()), (min, max), "{name}");
        assert!(!pspec.blurb().unwrap_or_default().is_empty());
    }
    // ...the Rust bindings panic instead of setting them, and the value stays.
    for (name, bad) in [("sigma", -5.0f64), ("sigma", 300.0), ("gain", -1.0)] {
        let e = element.clone();
        let result = std::panic::catch_unwind(move || e.set_property(name, bad));
        assert!(result.is_err(), "{name} = {bad} was accepted");
    }
    assert_eq!(element.property::<f64>("sigma"), 25.0);
    assert_eq!(element.property::<f64>("gain"), 1.0);

    // gst-launch syntax: an unknown enum nick is an error, a known one is taken.
    assert!(gst::parse::bin_from_description("addnoise mode=uniform", false).is_err());
    let bin = gst::parse::bin_from_description("addnoise name=n mode=poisson-gaussian seed=7", false).unwrap();
    let n = bin.by_name("n").unwrap();
    assert_eq!(mode_nick(&n), "poisson-gaussian");
    assert_eq!(n.property::<u64>("seed"), 7);
    // An out-of-range number through the C API (as gst-launch sets it) is refused
    // with a GLib warning, leaving the default.
    let refused = gst::parse::bin_from_description("addnoise name=n sigma=300", false);
    if let Ok(bin) = refused {
        assert_eq!(bin.by_name("n").unwrap().property::<f64>("sigma"), 25.0);
    }
}

#[test]
fn refuses_unsupported_formats() {
    init();
    let element = gst::ElementFactory::make("addnoise").build().unwrap();
    let sink = element.static_pad("sink").unwrap();
    let caps = sink.pad_template_caps();
    for ok in [
        "RGB", "BGR", "RGBx", "BGRx", "xRGB", "xBGR", "RGBA", "BGRA", "ARGB", "ABGR", "GRAY8",
    ] {
        let c = gst::Caps::from_str(&format!("video/x-raw,format={ok},width=8,height=8")).unwrap();
        assert!(caps.can_intersect(&c), "{ok}");
    }
    for bad in ["I420", "NV12", "GRAY16_LE", "RGB16"] {
        let c = gst::Caps::from_str(&format!("video/x-raw,format={bad},width=8,height=8")).unwrap();
        assert!(!caps.can_intersect(&c), "{bad}");
    }
}
