//! Tests of the `segoverlay` element: behind `denoiseseg` on the tiny joint test model
//! (tests/models/joint.onnx: denoised = 1 − image, class = argmax channel, classes 0
//! red, 1 green, 2 blue), and alone with hand-made class-map metas. Expected pixel
//! values are computed here, independently of the engine.

mod common;
use common::{init, model};
use gst::prelude::*;
use gst_check::Harness;

const MASK_META: &str = "DenoisesegMaskMeta";
const PALETTE: [[u8; 3]; 3] = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];

/// Bytes per pixel and the byte index of R, G, B (and x) in a pixel.
fn layout(format: &str) -> (usize, [usize; 3], Option<usize>) {
    match format {
        "RGB" => (3, [0, 1, 2], None),
        "BGRx" => (4, [2, 1, 0], Some(3)),
        other => panic!("no test layout for {other}"),
    }
}

fn stride(w: usize, bpp: usize) -> usize {
    (w * bpp).div_ceil(4) * 4
}

fn caps(format: &str, w: usize, h: usize) -> String {
    format!("video/x-raw,format={format},width={w},height={h},framerate=25/1")
}

/// Pixel (r, g, b) of test frame `i` at (x, y): varied so that every class appears.
fn pixel(i: usize, x: usize, y: usize) -> [u8; 3] {
    [
        ((x * 37 + y * 11 + i * 5) % 256) as u8,
        ((x * 13 + y * 29 + i * 3) % 256) as u8,
        ((x * 7 + y * 17 + i * 11 + 80) % 256) as u8,
    ]
}

fn argmax(p: [u8; 3]) -> usize {
    let mut best = 0;
    for c in 1..3 {
        if p[c] > p[best] {
            best = c;
        }
    }
    best
}

fn frame(format: &str, i: usize, w: usize, h: usize) -> gst::Buffer {
    let (bpp, rgb, x_byte) = layout(format);
    let s = stride(w, bpp);
    let mut data = vec![0u8; s * h];
    for y in 0..h {
        for x in 0..w {
            let p = pixel(i, x, y);
            let o = y * s + x * bpp;
            for c in 0..3 {
                data[o + rgb[c]] = p[c];
            }
            if let Some(xb) = x_byte {
                data[o + xb] = 0x5a;
            }
        }
    }
    let mut b = gst::Buffer::from_mut_slice(data);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(40 * i as u64));
        b.set_duration(gst::ClockTime::from_mseconds(40));
    }
    b
}

/// Runs `appsrc ! <middle> ! appsink` over `n` frames and returns the output buffers.
fn run(middle: &str, format: &str, w: usize, h: usize, n: usize) -> Vec<gst::Buffer> {
    init();
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps={c} ! {middle} ! appsink name=out sync=false",
        c = caps(format, w, h).replace(',', "\\,"),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    let out = pipeline.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..n {
        src.push_buffer(frame(format, i, w, h)).unwrap();
    }
    src.end_of_stream().unwrap();
    let mut outs = Vec::new();
    while let Ok(s) = out.pull_sample() {
        outs.push(s.buffer_owned().unwrap());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(outs.len(), n, "{middle}");
    outs
}

fn denoiseseg(props: &str) -> String {
    format!(
        "denoiseseg model={} execution-provider=cpu class-confirm-frames=1 {props}",
        model("joint.onnx")
    )
}

/// The blend of `v` and `colour`, rounded; on an exact tie either neighbour.
fn check_blend(got: u8, v: u8, colour: u8, alpha: f64, what: &str) {
    let exact = (1.0 - alpha) * f64::from(v) + alpha * f64::from(colour);
    let ok = if (exact - exact.floor() - 0.5).abs() < 1e-9 {
        f64::from(got) == exact.floor() || f64::from(got) == exact.ceil()
    } else {
        f64::from(got) == exact.round()
    };
    assert!(ok, "{what}: got {got}, want round({exact})");
}

#[test]
fn blends_the_class_colours_behind_denoiseseg_in_rgb_and_bgrx() {
    let (w, h, n) = (21, 13, 4);
    for format in ["RGB", "BGRx"] {
        let outs = run(&format!("{} ! segoverlay alpha=0.5", denoiseseg("")), format, w, h, n);
        let (bpp, rgb, x_byte) = layout(format);
        let s = stride(w, bpp);
        for (i, out) in outs.iter().enumerate() {
            assert_eq!(out.pts(), Some(gst::ClockTime::from_mseconds(40 * i as u64)));
            // The meta is still there, with the palette.
            let meta = gst::meta::CustomMeta::from_buffer(out, MASK_META).expect("meta kept");
            let palette = meta.structure().get::<gst::glib::Bytes>("palette").unwrap();
            assert_eq!(&palette[..], PALETTE.concat().as_slice());
            assert_eq!(meta.structure().get::<u32>("classes").unwrap(), 3);
            let map = out.map_readable().unwrap();
            for y in 0..h {
                for x in 0..w {
                    let p = pixel(i, x, y);
                    let colour = PALETTE[argmax(p)];
                    let o = y * s + x * bpp;
                    for c in 0..3 {
                        let what = format!("{format} frame {i} ({x},{y}) channel {c}");
                        check_blend(map[o + rgb[c]], 255 - p[c], colour[c], 0.5, &what);
                    }
                    if let Some(xb) = x_byte {
                        // denoiseseg writes 255 there; segoverlay leaves it.
                        assert_eq!(map[o + xb], 255);
                    }
                }
            }
        }
    }
}

#[test]
fn gives_the_same_bytes_as_denoiseseg_overlay_output() {
    let (w, h, n) = (21, 13, 3);
    for format in ["RGB", "BGRx"] {
        for alpha in ["0.5", "0.3"] {
            let ours = run(
                &format!("{} ! segoverlay alpha={alpha}", denoiseseg("")),
                format,
                w,
                h,
                n,
            );
            let theirs = run(
                &denoiseseg(&format!("output=overlay overlay-alpha={alpha}")),
                format,
                w,
                h,
                n,
            );
            // Row padding (RGB rows of 63 bytes in 64) is left unwritten by both.
            let (bpp, _, _) = layout(format);
            let s = stride(w, bpp);
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                let (a, b) = (a.map_readable().unwrap(), b.map_readable().unwrap());
                for y in 0..h {
                    let row = y * s..y * s + w * bpp;
                    assert!(
                        a[row.clone()] == b[row],
                        "{format} alpha {alpha} frame {i} row {y} differs"
                    );
                }
            }
        }
    }
}

#[test]
fn alpha_zero_passes_the_denoised_frames_through() {
    let (w, h) = (16, 8);
    let outs = run(&format!("{} ! segoverlay alpha=0", denoiseseg("")), "RGB", w, h, 2);
    let s = stride(w, 3);
    for (i, out) in outs.iter().enumerate() {
        let map = out.map_readable().unwrap();
        for y in 0..h {
            for x in 0..w {
                let p = pixel(i, x, y);
                assert_eq!(&map[y * s + x * 3..][..3], &[255 - p[0], 255 - p[1], 255 - p[2]]);
            }
        }
    }
}

fn harness(format: &str, w: usize, h: usize, props: &[(&str, &str)]) -> Harness {
    init();
    let mut hs = Harness::new("segoverlay");
    for (k, v) in props {
        hs.element().unwrap().set_property_from_str(k, v);
    }
    hs.set_src_caps_str(&caps(format, w, h));
    hs.play();
    hs
}

/// Attaches a class-map meta of `mw`×`mh` (rows padded to a multiple of 4) whose
/// class at (x, y) is `class(x, y)`.
fn attach_meta(buffer: &mut gst::Buffer, mw: usize, mh: usize, class: impl Fn(usize, usize) -> u8) {
    let ms = stride(mw, 1);
    let mut mask = vec![0u8; ms * mh];
    for y in 0..mh {
        for x in 0..mw {
            mask[y * ms + x] = class(x, y);
        }
    }
    let b = buffer.make_mut();
    let mut meta = gst::meta::CustomMeta::add(b, MASK_META).unwrap();
    let s = meta.mut_structure();
    s.set("mask", gst::Buffer::from_mut_slice(mask));
    s.set("width", mw as u32);
    s.set("height", mh as u32);
    s.set("stride", ms as u32);
    s.set("classes", 3u32);
    s.set("palette", gst::glib::Bytes::from_owned(PALETTE.concat()));
}

#[test]
fn a_buffer_without_meta_passes_untouched_and_uncopied() {
    let (w, h) = (10, 6);
    let mut hs = harness("RGB", w, h, &[("alpha", "1.0")]);
    let input = frame("RGB", 0, w, h);
    let kept = input.clone();
    hs.push(input).unwrap();
    let out = hs.pull().unwrap();
    assert_eq!(out.as_ptr(), kept.as_ptr(), "the same buffer, not a copy");
    assert_eq!(
        out.map_readable().unwrap().as_slice(),
        frame("RGB", 0, w, h).map_readable().unwrap().as_slice()
    );
    // A frame with a meta next is drawn (alpha 1: the colours themselves).
    let mut b = frame("RGB", 1, w, h);
    attach_meta(&mut b, w, h, |x, _| (x % 3) as u8);
    hs.push(b).unwrap();
    let out = hs.pull().unwrap();
    let map = out.map_readable().unwrap();
    let s = stride(w, 3);
    for y in 0..h {
        for x in 0..w {
            assert_eq!(&map[y * s + x * 3..][..3], &PALETTE[x % 3], "({x},{y})");
        }
    }
}

#[test]
fn alpha_zero_is_passthrough_and_alpha_changes_while_playing() {
    let (w, h) = (8, 4);
    let mut hs = harness("BGRx", w, h, &[("alpha", "0")]);
    let mut b = frame("BGRx", 0, w, h);
    attach_meta(&mut b, w, h, |_, _| 1);
    let kept = b.clone();
    hs.push(b).unwrap();
    let out = hs.pull().unwrap();
    assert_eq!(out.as_ptr(), kept.as_ptr(), "alpha 0: the same buffer");
    drop((out, kept));
    // Raised while playing: applies from the next frame.
    hs.element().unwrap().set_property("alpha", 0.25f64);
    let mut b = frame("BGRx", 0, w, h);
    attach_meta(&mut b, w, h, |_, _| 1);
    hs.push(b).unwrap();
    let out = hs.pull().unwrap();
    let map = out.map_readable().unwrap();
    let s = stride(w, 4);
    for y in 0..h {
        for x in 0..w {
            let p = pixel(0, x, y);
            let o = y * s + x * 4;
            for (c, &i) in [2usize, 1, 0].iter().enumerate() {
                check_blend(map[o + i], p[c], PALETTE[1][c], 0.25, &format!("({x},{y}) c{c}"));
            }
            assert_eq!(map[o + 3], 0x5a, "x byte untouched");
        }
    }
}

#[test]
fn outline_draws_opaque_one_pixel_class_boundaries() {
    let (w, h) = (9, 5);
    let mut hs = harness("RGB", w, h, &[("outline", "true"), ("alpha", "0.2")]);
    let mut b = frame("RGB", 2, w, h);
    // Class 0 left of column 4, class 2 from column 4 on; row 3 on all class 1.
    let class = |x: usize, y: usize| {
        if y >= 3 {
            1
        } else if x < 4 {
            0
        } else {
            2
        }
    };
    attach_meta(&mut b, w, h, class);
    hs.push(b).unwrap();
    let out = hs.pull().unwrap();
    let map = out.map_readable().unwrap();
    let s = stride(w, 3);
    for y in 0..h {
        for x in 0..w {
            let edge = (x > 0 && class(x, y) != class(x - 1, y)) || (y > 0 && class(x, y) != class(x, y - 1));
            let want = if edge {
                PALETTE[class(x, y) as usize]
            } else {
                pixel(2, x, y)
            };
            assert_eq!(&map[y * s + x * 3..][..3], &want, "({x},{y}) edge {edge}");
        }
    }
}

#[test]
fn a_meta_of_another_size_is_skipped_with_one_warning() {
    let (w, h) = (8, 6);
    let mut hs = harness("RGB", w, h, &[("alpha", "1.0")]);
    let bus = gst::Bus::new();
    hs.element().unwrap().set_bus(Some(&bus));
    for i in 0..3 {
        let mut b = frame("RGB", i, w, h);
        attach_meta(&mut b, w / 2, h / 2, |_, _| 0);
        let kept = b.clone();
        hs.push(b).unwrap();
        let out = hs.pull().unwrap();
        assert_eq!(out.as_ptr(), kept.as_ptr(), "frame {i} passed through");
    }
    let mut warnings = 0;
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Warning(w) = msg.view() {
            let text = format!("{} {}", w.error(), w.debug().unwrap_or_default());
            assert!(text.contains("4x3"), "{text}");
            warnings += 1;
        }
    }
    assert_eq!(warnings, 1);
}

#[test]
fn inspect_lists_the_properties_with_ranges() {
    init();
    let e = gst::ElementFactory::make("segoverlay").build().unwrap();
    let alpha = e.find_property("alpha").unwrap();
    let alpha = alpha.downcast_ref::<gst::glib::ParamSpecDouble>().unwrap();
    assert_eq!(
        (alpha.minimum(), alpha.maximum(), alpha.default_value()),
        (0.0, 1.0, 0.5)
    );
    assert!(alpha.flags().contains(gst::PARAM_FLAG_MUTABLE_PLAYING));
    let outline = e.find_property("outline").unwrap();
    assert!(!outline.default_value().get::<bool>().unwrap());
    assert!(outline.flags().contains(gst::PARAM_FLAG_MUTABLE_PLAYING));
}
