//! Set-up shared by the plugin's test files.
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::sync::Once;

use gst::prelude::*;

/// Initializes GStreamer and registers the plugin statically, once per test binary.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst::init");
        gstdenoiseseg::plugin_register_static().expect("register plugin");
    });
}

/// A test model from tests/models at the top of the project.
pub fn model(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/models")
        .join(name)
        .display()
        .to_string()
}

/// A `denoiseseg` element on the CPU with the model at `path`, then `props` set from text.
/// Its class maps are not stabilized over time (`class-confirm-frames=1`): the test
/// frames change every frame and the tests check each frame's map; the tests of the
/// stabilization set it.
pub fn element_at(path: &str, props: &[(&str, &str)]) -> gst::Element {
    init();
    let e = gst::ElementFactory::make("denoiseseg")
        .property("model", path)
        .property_from_str("execution-provider", "cpu")
        .property("class-confirm-frames", 1u32)
        .build()
        .unwrap();
    for (k, v) in props {
        e.set_property_from_str(k, v);
    }
    e
}

/// A `denoiseseg` element on the CPU with the test model `model_name`, then `props`.
pub fn element(model_name: &str, props: &[(&str, &str)]) -> gst::Element {
    element_at(&model(model_name), props)
}

/// Row stride of a packed frame `w` pixels wide with `bpp` bytes a pixel (4-byte aligned).
pub fn stride(w: usize, bpp: usize) -> usize {
    (w * bpp).div_ceil(4) * 4
}

/// Pixel (r, g, b) of test frame `i` at (x, y): varied so that every class appears.
pub fn pixel(i: usize, x: usize, y: usize) -> [u8; 3] {
    [
        ((x * 37 + y * 11 + i * 5) % 256) as u8,
        ((x * 13 + y * 29 + i * 3) % 256) as u8,
        ((x * 7 + y * 17 + i * 11 + 80) % 256) as u8,
    ]
}

/// Test frame `i`: packed RGB, timestamps 40 ms apart, offset `i`.
pub fn rgb_frame(i: usize, w: usize, h: usize) -> gst::Buffer {
    let s = stride(w, 3);
    let mut data = vec![0u8; s * h];
    for y in 0..h {
        for x in 0..w {
            data[y * s + x * 3..y * s + x * 3 + 3].copy_from_slice(&pixel(i, x, y));
        }
    }
    let mut b = gst::Buffer::from_mut_slice(data);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(40 * i as u64));
        b.set_dts(gst::ClockTime::from_mseconds(40 * i as u64));
        b.set_duration(gst::ClockTime::from_mseconds(40));
        b.set_offset(i as u64);
    }
    b
}

pub fn rgb_caps(w: usize, h: usize) -> String {
    format!("video/x-raw,format=RGB,width={w},height={h},framerate=25/1")
}

/// The class the `joint` test model gives a pixel: its strongest channel, the first on ties.
pub fn argmax(p: [u8; 3]) -> u8 {
    let mut best = 0;
    for c in 1..3 {
        if p[c] > p[best] {
            best = c;
        }
    }
    best as u8
}

/// Name of the custom meta that carries the class map on `denoiseseg`'s src buffers.
pub const MASK_META: &str = "DenoisesegMaskMeta";

/// A playing Harness around `e` with input caps `caps`.
pub fn harness(e: &gst::Element, caps: &str) -> gst_check::Harness {
    let mut h = gst_check::Harness::with_element(e, Some("sink"), Some("src"));
    h.set_src_caps_str(caps);
    h.play();
    h
}

/// The class map of a src buffer's `DenoisesegMaskMeta`: (bytes, stride).
pub fn mask_of(buffer: &gst::BufferRef) -> (Vec<u8>, usize) {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, MASK_META).expect("class map meta on src buffer");
    let s = meta.structure();
    let mask = s.get::<gst::Buffer>("mask").unwrap();
    let stride = s.get::<u32>("stride").unwrap() as usize;
    let bytes = mask.map_readable().unwrap().to_vec();
    (bytes, stride)
}

/// How many `DenoisesegMaskMeta`s a buffer carries (counted on a copy, removing them one by one).
pub fn mask_meta_count(buffer: &gst::BufferRef) -> usize {
    let mut copy = buffer.copy();
    let b = copy.make_mut();
    let mut n = 0;
    while let Ok(m) = gst::meta::CustomMeta::from_mut_buffer(b, MASK_META) {
        m.remove().expect("removable meta");
        n += 1;
    }
    n
}

/// The error `e` fails to start with (READY -> PAUSED), as "message | debug".
pub fn start_error(e: &gst::Element) -> String {
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let result = e.set_state(gst::State::Paused);
    let mut text = String::new();
    while let Some(msg) = bus.timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Error]) {
        if let gst::MessageView::Error(err) = msg.view() {
            text = format!("{} | {:?}", err.error(), err.debug());
            break;
        }
    }
    let _ = e.set_state(gst::State::Null);
    assert!(result.is_err() || !text.is_empty(), "start should fail");
    text
}
