//! Several `denoiseseg` elements in one process sharing one engine through
//! `model-instance-id`, on the joint test model (denoised = 1 - image): every frame of
//! every stream arrives, in order, with its own pixel values; the engine's batches hold
//! more than one frame; mismatched settings under one id are a clear error; several
//! runs in flight (`concurrent-runs`) keep every frame in order.
use std::thread;

mod common;
use common::{element, init, model, pixel, rgb_caps, rgb_frame, start_error, stride};
use gst::prelude::*;

const W: usize = 16;
const H: usize = 8;

/// `appsrc (live) ! denoiseseg (joint, shared engine `id`) ! appsink`.
fn pipeline(id: &str, props: &str) -> gst::Pipeline {
    init();
    let p = gst::parse::launch(&format!(
        "appsrc name=src format=time is-live=true ! denoiseseg name=d model={m} execution-provider=cpu \
         model-instance-id={id} {props} ! appsink name=sink sync=false",
        m = model("joint.onnx"),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    src.set_caps(Some(&rgb_caps(W, H).parse::<gst::Caps>().unwrap()));
    p
}

/// Checks that `out` is frame `i` (timestamps and offset of `rgb_frame(i)`) through the
/// joint model: 255 - input.
fn check(out: &gst::Buffer, stream: usize, i: usize) {
    assert_eq!(
        out.pts(),
        Some(gst::ClockTime::from_mseconds(40 * i as u64)),
        "stream {stream}: frame {i} out of order"
    );
    assert_eq!(out.offset(), i as u64, "stream {stream}");
    let s = stride(W, 3);
    let map = out.map_readable().unwrap();
    for y in 0..H {
        for x in 0..W {
            let p = pixel(i, x, y);
            let got = &map[y * s + x * 3..y * s + x * 3 + 3];
            assert_eq!(
                got,
                &[255 - p[0], 255 - p[1], 255 - p[2]],
                "stream {stream} frame {i} pixel ({x},{y})"
            );
        }
    }
}

#[test]
fn four_live_streams_share_one_engine_with_every_frame_in_order() {
    let streams = 4;
    let n = 30;
    let pipelines: Vec<gst::Pipeline> = (0..streams)
        .map(|_| pipeline("cams", "batch-size=4 batch-timeout=100 max-in-flight=8"))
        .collect();
    for p in &pipelines {
        p.set_state(gst::State::Playing).unwrap();
    }
    // Stream s carries frames 1000 s .. 1000 s + n: its own pixels and timestamps.
    let feeders: Vec<_> = pipelines
        .iter()
        .enumerate()
        .map(|(s, p)| {
            let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
            thread::spawn(move || {
                for i in 0..n {
                    src.push_buffer(rgb_frame(1000 * s + i, W, H)).unwrap();
                }
                src.end_of_stream().unwrap();
            })
        })
        .collect();
    for f in feeders {
        f.join().unwrap();
    }
    for (s, p) in pipelines.iter().enumerate() {
        let sink = p.by_name("sink").unwrap().downcast::<gst_app::AppSink>().unwrap();
        for i in 0..n {
            let sample = sink
                .try_pull_sample(gst::ClockTime::from_seconds(30))
                .unwrap_or_else(|| panic!("stream {s}: frame {i} never came"));
            check(&sample.buffer_owned().unwrap(), s, 1000 * s + i);
        }
        let msg = p
            .bus()
            .unwrap()
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(30),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("EOS");
        assert_eq!(msg.type_(), gst::MessageType::Eos, "stream {s}: {msg:?}");
    }
    for (s, p) in pipelines.iter().enumerate() {
        let stats = p.by_name("d").unwrap().property::<gst::Structure>("stats");
        assert_eq!(stats.get::<u64>("processed").unwrap(), n as u64, "stream {s}: {stats}");
        assert_eq!(stats.get::<u64>("dropped").unwrap(), 0, "stream {s}: {stats}");
        assert_eq!(stats.get::<u64>("engine-streams").unwrap(), 4, "stream {s}: {stats}");
        let frames = stats.get::<f64>("mean-batch-frames").unwrap();
        assert!(frames > 1.0, "stream {s}: batches of one frame: {stats}");
        assert_eq!(stats.get::<String>("provider").unwrap(), "cpu", "stream {s}: {stats}");
        assert_eq!(p.by_name("d").unwrap().property::<String>("provider"), "cpu");
        assert_eq!(p.by_name("d").unwrap().property::<String>("model-instance-id"), "cams");
    }
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn a_private_engine_has_one_stream() {
    let e = element("joint.onnx", &[]);
    assert_eq!(e.property::<String>("model-instance-id"), "");
    let mut h = common::harness(&e, &rgb_caps(W, H));
    h.push(rgb_frame(0, W, H)).unwrap();
    check(&h.pull().unwrap(), 0, 0);
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("engine-streams").unwrap(), 1, "{stats}");
    assert_eq!(stats.get::<f64>("mean-batch-frames").unwrap(), 1.0, "{stats}");
}

#[test]
fn another_model_under_a_running_id_is_an_error_naming_the_id() {
    let first = element("joint.onnx", &[("model-instance-id", "cams-mismatch")]);
    assert!(first.set_state(gst::State::Paused).is_ok());
    let second = element("bgr.onnx", &[("model-instance-id", "cams-mismatch")]);
    let msg = start_error(&second);
    assert!(msg.contains("cams-mismatch"), "{msg}");
    assert!(msg.contains("model") && msg.contains("bgr.onnx"), "{msg}");
    let third = element(
        "joint.onnx",
        &[("model-instance-id", "cams-mismatch"), ("batch-size", "2")],
    );
    let msg = start_error(&third);
    assert!(msg.contains("cams-mismatch") && msg.contains("batch-size"), "{msg}");
    first.set_state(gst::State::Null).unwrap();
    // Once the last element on it stops, the id is free for another model.
    let again = element("bgr.onnx", &[("model-instance-id", "cams-mismatch")]);
    assert!(again.set_state(gst::State::Paused).is_ok());
    again.set_state(gst::State::Null).unwrap();
}

/// Offsets of what `h` gives until EOS.
fn offsets_until_eos(h: &mut gst_check::Harness) -> Vec<(usize, gst::Buffer)> {
    let mut seen = Vec::new();
    loop {
        match h.pull_until_eos() {
            Ok(Some(b)) => seen.push((b.offset() as usize, b)),
            Ok(None) => return seen,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_flush_on_one_element_leaves_the_others_on_the_engine_untouched() {
    let props = [
        ("model-instance-id", "cams-flush"),
        ("batch-size", "4"),
        ("batch-timeout", "30"),
        ("max-in-flight", "8"),
    ];
    let elements: Vec<gst::Element> = (0..4).map(|_| element("joint.onnx", &props)).collect();
    let mut hs: Vec<gst_check::Harness> = elements.iter().map(|e| common::harness(e, &rgb_caps(W, H))).collect();
    for i in 0..8 {
        for (s, h) in hs.iter_mut().enumerate() {
            h.push(rgb_frame(1000 * s + i, W, H)).unwrap();
        }
    }
    // Element 0 flushes with its frames in flight; the others go on.
    assert!(hs[0].push_event(gst::event::FlushStart::new()));
    assert!(hs[0].push_event(gst::event::FlushStop::new(true)));
    hs[0].push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
    for i in 100..104 {
        for (s, h) in hs.iter_mut().enumerate() {
            h.push(rgb_frame(1000 * s + i, W, H)).unwrap();
        }
    }
    for h in hs.iter_mut() {
        assert!(h.push_event(gst::event::Eos::new()));
    }
    for (s, h) in hs.iter_mut().enumerate() {
        let seen = offsets_until_eos(h);
        let offsets: Vec<usize> = seen.iter().map(|(o, _)| *o - 1000 * s).collect();
        if s == 0 {
            // Some frames from before the flush may have left before it; none after it.
            let first_new = offsets.iter().position(|o| *o >= 100).expect("post-flush frames");
            assert_eq!(offsets[first_new..], [100, 101, 102, 103], "stream 0: {offsets:?}");
            assert!(
                offsets[..first_new].iter().enumerate().all(|(k, o)| k == *o),
                "{offsets:?}"
            );
        } else {
            let all: Vec<usize> = (0..8).chain(100..104).collect();
            assert_eq!(offsets, all, "stream {s} lost or reordered frames");
        }
        for (o, b) in &seen {
            check(b, s, *o);
        }
    }
    for e in &elements {
        let stats = e.property::<gst::Structure>("stats");
        assert_eq!(stats.get::<u64>("engine-streams").unwrap(), 4, "{stats}");
    }
}

#[test]
fn concurrent_runs_give_every_frame_in_order_from_several_sessions() {
    let props = [
        ("concurrent-runs", "3"),
        ("batch-size", "2"),
        ("batch-timeout", "5"),
        ("max-in-flight", "12"),
    ];
    let e = element("joint.onnx", &props);
    assert_eq!(e.property::<u32>("concurrent-runs"), 3);
    let mut h = common::harness(&e, &rgb_caps(W, H));
    let n = 24;
    for i in 0..n {
        h.push(rgb_frame(i, W, H)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let seen = offsets_until_eos(&mut h);
    let offsets: Vec<usize> = seen.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..n).collect::<Vec<_>>(), "lost or reordered frames");
    for (o, b) in &seen {
        check(b, 0, *o);
    }
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("processed").unwrap(), n as u64, "{stats}");
    assert_eq!(stats.get::<u64>("concurrent-runs").unwrap(), 3, "{stats}");
    assert_eq!(stats.get::<String>("engine-cache").unwrap(), "off", "{stats}");
    assert!(stats.get::<f64>("build-ms").unwrap() > 0.0, "{stats}");
    // Elements sharing an engine must agree on it.
    let first = element(
        "joint.onnx",
        &[("model-instance-id", "cams-runs"), ("concurrent-runs", "2")],
    );
    assert!(first.set_state(gst::State::Paused).is_ok());
    let second = element("joint.onnx", &[("model-instance-id", "cams-runs")]);
    let msg = start_error(&second);
    assert!(msg.contains("cams-runs") && msg.contains("concurrent-runs"), "{msg}");
    first.set_state(gst::State::Null).unwrap();
}

/// The `model` Progress messages (type, text) on `p`'s bus, up to the first Complete or
/// Error, each waited for `wait` at most.
fn model_progress(p: &gst::Pipeline, wait: gst::ClockTime) -> Vec<(gst::ProgressType, String)> {
    let bus = p.bus().unwrap();
    let mut seen = Vec::new();
    while let Some(msg) = bus.timed_pop_filtered(wait, &[gst::MessageType::Progress, gst::MessageType::Error]) {
        let gst::MessageView::Progress(m) = msg.view() else {
            panic!("{msg:?}");
        };
        let (kind, code, text) = m.get();
        if code == "model" {
            seen.push((kind, text.to_string()));
            if matches!(kind, gst::ProgressType::Complete | gst::ProgressType::Error) {
                break;
            }
        }
    }
    seen
}

#[test]
fn every_element_on_a_shared_engine_posts_when_its_model_is_ready() {
    // Started together: the second may join before or after the first has built the
    // session; either way each posts a Start and then a Complete of its own.
    let pipelines: Vec<gst::Pipeline> = (0..3).map(|_| pipeline("progress", "")).collect();
    for p in &pipelines {
        p.set_state(gst::State::Playing).unwrap();
    }
    for p in &pipelines {
        let src = p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
        src.push_buffer(rgb_frame(0, W, H)).unwrap();
    }
    for (s, p) in pipelines.iter().enumerate() {
        let seen = model_progress(p, gst::ClockTime::from_seconds(30));
        let kinds: Vec<_> = seen.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [gst::ProgressType::Start, gst::ProgressType::Complete],
            "stream {s}: {seen:?}"
        );
        assert!(seen[1].1.contains("model ready on cpu"), "stream {s}: {seen:?}");
    }
    let joined = pipelines
        .iter()
        .filter(|p| {
            p.by_name("d")
                .unwrap()
                .property::<gst::Structure>("stats")
                .get::<u64>("engine-streams")
                .unwrap()
                == 3
        })
        .count();
    assert_eq!(joined, 3, "one engine for the three");
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
}
