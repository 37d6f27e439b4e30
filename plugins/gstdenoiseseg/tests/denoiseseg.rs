//! Harness and pipeline tests of the `denoiseseg` element on the tiny test models in
//! tests/models (see tests/models/README.md for what each one computes). Expected pixel
//! values are computed here, independently of the engine.
use std::path::PathBuf;
use std::time::Duration;

mod common;
use common::{
    argmax, element, harness, init, mask_of, model, pixel, rgb_caps, rgb_frame, start_error, stride, MASK_META,
};
use gst::prelude::*;
use gst_check::Harness;

/// Checks frame `i` of size w x h from the joint model: denoised = 255 - input,
/// class = argmax channel, timestamps kept.
fn check_joint(out: &gst::Buffer, i: usize, w: usize, h: usize) {
    assert_eq!(
        out.pts(),
        Some(gst::ClockTime::from_mseconds(40 * i as u64)),
        "pts of frame {i}"
    );
    assert_eq!(out.dts(), Some(gst::ClockTime::from_mseconds(40 * i as u64)));
    assert_eq!(out.duration(), Some(gst::ClockTime::from_mseconds(40)));
    assert_eq!(out.offset(), i as u64);
    let s = stride(w, 3);
    let map = out.map_readable().unwrap();
    let (mask, ms) = mask_of(out);
    for y in 0..h {
        for x in 0..w {
            let p = pixel(i, x, y);
            let got = &map[y * s + x * 3..y * s + x * 3 + 3];
            assert_eq!(got, &[255 - p[0], 255 - p[1], 255 - p[2]], "frame {i} pixel ({x},{y})");
            assert_eq!(mask[y * ms + x], argmax(p), "frame {i} class at ({x},{y})");
        }
    }
}

#[test]
fn joint_model_values_order_and_timestamps_with_workers_and_batches() {
    // 21x13 is not a multiple of the model's size_multiple (8): padded, then cropped back.
    let (w, h) = (21, 13);
    let e = element(
        "joint.onnx",
        &[
            ("workers", "3"),
            ("batch-size", "3"),
            ("batch-timeout", "20"),
            ("max-in-flight", "6"),
        ],
    );
    let mut hs = harness(&e, &rgb_caps(w, h));
    let n = 25;
    for i in 0..n {
        assert_eq!(hs.push(rgb_frame(i, w, h)), Ok(gst::FlowSuccess::Ok));
    }
    for i in 0..n {
        let out = hs.pull().expect("output frame");
        check_joint(&out, i, w, h);
    }
    assert_eq!(e.property::<u64>("frames-processed"), n as u64);
    assert_eq!(e.property::<u64>("frames-dropped"), 0);
    assert_eq!(e.property::<String>("provider"), "cpu");
    let stats = e.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("processed").unwrap(), n as u64);
    assert!(
        stats.get::<u64>("batches").unwrap() < n as u64,
        "frames were batched: {stats}"
    );
}

#[test]
fn eos_waits_for_every_frame_in_a_full_queue() {
    let (w, h) = (16, 8);
    let e = element("joint.onnx", &[("max-in-flight", "4"), ("workers", "2")]);
    let mut hs = harness(&e, &rgb_caps(w, h));
    for i in 0..12 {
        hs.push(rgb_frame(i, w, h)).unwrap();
    }
    assert!(hs.push_event(gst::event::Eos::new()));
    for i in 0..12 {
        check_joint(&hs.pull().unwrap(), i, w, h);
    }
    // The EOS comes after all of them.
    loop {
        let ev = hs.pull_event().expect("EOS downstream");
        if ev.type_() == gst::EventType::Eos {
            break;
        }
    }
    assert_eq!(hs.buffers_in_queue(), 0);
}

#[test]
fn flush_discards_in_flight_frames_and_nothing_stale_follows() {
    let (w, h) = (64, 32);
    let e = element("joint.onnx", &[("max-in-flight", "8")]);
    let mut hs = harness(&e, &rgb_caps(w, h));
    for i in 0..8 {
        hs.push(rgb_frame(i, w, h)).unwrap();
    }
    assert!(hs.push_event(gst::event::FlushStart::new()));
    assert!(hs.push_event(gst::event::FlushStop::new(true)));
    hs.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
    for i in 100..105 {
        hs.push(rgb_frame(i, w, h)).unwrap();
    }
    assert!(hs.push_event(gst::event::Eos::new()));
    let mut seen = Vec::new();
    loop {
        match hs.pull_until_eos() {
            Ok(Some(b)) => seen.push((b.offset() as usize, b)),
            Ok(None) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let first_new = seen.iter().position(|(o, _)| *o >= 100).expect("post-flush frames");
    assert!(
        seen[first_new..].iter().all(|(o, _)| *o >= 100),
        "stale frame after the flush: {:?}",
        seen.iter().map(|(o, _)| *o).collect::<Vec<_>>()
    );
    let new: Vec<_> = seen[first_new..].iter().map(|(o, _)| *o).collect();
    assert_eq!(new, (100..105).collect::<Vec<_>>());
    for (o, b) in &seen[first_new..] {
        check_joint(b, *o, w, h);
    }
}

#[test]
fn caps_change_mid_stream() {
    let e = element("joint.onnx", &[("batch-size", "2"), ("batch-timeout", "50")]);
    let mut hs = harness(&e, &rgb_caps(16, 16));
    for i in 0..3 {
        hs.push(rgb_frame(i, 16, 16)).unwrap();
    }
    hs.set_src_caps_str(&rgb_caps(30, 10));
    for i in 3..6 {
        hs.push(rgb_frame(i, 30, 10)).unwrap();
    }
    for i in 0..3 {
        check_joint(&hs.pull().unwrap(), i, 16, 16);
    }
    for i in 3..6 {
        check_joint(&hs.pull().unwrap(), i, 30, 10);
    }
    let caps = hs.sinkpad().unwrap().current_caps().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("width").unwrap(), 30);
}

#[test]
fn overlay_blends_the_class_colours() {
    let (w, h) = (8, 8);
    let e = element("joint.onnx", &[("output", "overlay"), ("overlay-alpha", "1.0")]);
    let mut hs = harness(&e, &rgb_caps(w, h));
    hs.push(rgb_frame(0, w, h)).unwrap();
    let out = hs.pull().unwrap();
    let map = out.map_readable().unwrap();
    let palette = [[255u8, 0, 0], [0, 255, 0], [0, 0, 255]];
    let s = stride(w, 3);
    for y in 0..h {
        for x in 0..w {
            let class = argmax(pixel(0, x, y)) as usize;
            assert_eq!(&map[y * s + x * 3..y * s + x * 3 + 3], &palette[class], "({x},{y})");
        }
    }
}

#[test]
fn yuv_and_rgbx_formats_round_trip_through_the_model() {
    // A flat colour in each format: the joint model inverts it; alpha (77) passes through.
    init();
    for format in ["I420", "NV12", "BGRx", "RGBA", "ARGB"] {
        let (w, h) = (32, 18);
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::from_string(format), w, h)
            .fps(gst::Fraction::new(25, 1))
            .build()
            .unwrap();
        let e = element("joint.onnx", &[]);
        let mut hs = Harness::with_element(&e, Some("sink"), Some("src"));
        hs.set_src_caps(info.to_caps().unwrap());
        hs.play();
        // Build the input by converting an RGB frame with videoconvert's reference: use a
        // mid-grey, whose YUV and RGB forms are known exactly (Y=126, U=V=128 limited range).
        let mut data = vec![0u8; info.size()];
        let rgb_grey = 128u8;
        match format {
            "I420" | "NV12" => {
                let y_val = (16.0 + 219.0 * rgb_grey as f64 / 255.0).round() as u8;
                for (i, b) in data.iter_mut().enumerate() {
                    *b = if i < info.offset()[1] { y_val } else { 128 };
                }
            }
            _ => data.fill(rgb_grey),
        }
        if let Some(a) = format.find('A') {
            data.iter_mut().skip(a).step_by(4).for_each(|b| *b = 77);
        }
        let mut buf = gst::Buffer::from_mut_slice(data);
        buf.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        hs.push(buf).unwrap();
        let out = hs.pull().unwrap();
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(out.as_ref(), &info).unwrap();
        // Inverted grey 128 -> 127: check the first plane's first pixel, in its own encoding.
        let p = frame.plane_data(0).unwrap();
        match format {
            "I420" | "NV12" => {
                let want = 16.0 + 219.0 * 127.0 / 255.0;
                assert!((p[0] as f64 - want).abs() <= 1.5, "{format}: Y {} vs {want}", p[0]);
                let uv = frame.plane_data(1).unwrap();
                assert!((uv[0] as i32 - 128).abs() <= 1, "{format}: chroma {}", uv[0]);
            }
            "RGBA" => assert_eq!(&p[..8], &[127, 127, 127, 77, 127, 127, 127, 77], "{format}"),
            "ARGB" => assert_eq!(&p[..8], &[77, 127, 127, 127, 77, 127, 127, 127], "{format}"),
            _ => assert_eq!(&p[..3], &[127, 127, 127], "{format}"),
        }
    }
}

#[test]
fn noise_level_feeds_the_sigma_input() {
    let (w, h) = (10, 6);
    // 51 / 255 = 0.2: the test model adds sigma to every channel.
    let e = element("denoise_sigma.onnx", &[("noise-level", "51")]);
    let mut hs = harness(&e, &rgb_caps(w, h));
    hs.push(rgb_frame(2, w, h)).unwrap();
    let out = hs.pull().unwrap();
    let map = out.map_readable().unwrap();
    let s = stride(w, 3);
    for y in 0..h {
        for x in 0..w {
            let p = pixel(2, x, y);
            let want = p.map(|v| (v as u32 + 51).min(255) as u8);
            assert_eq!(&map[y * s + x * 3..y * s + x * 3 + 3], &want, "({x},{y})");
        }
    }
    // A denoise-only model has no class map.
    assert!(gst::meta::CustomMeta::from_buffer(out.as_ref(), MASK_META).is_err());
    assert!((e.property::<f64>("noise-estimate") - 51.0).abs() < 0.01);
}

#[test]
fn estimated_noise_level_tracks_the_noise() {
    // With noise-level=-1 the element estimates sigma per frame; the test model adds it,
    // so a flat frame with sigma-10 noise comes back about 10 levels brighter.
    let (w, h) = (128, 64);
    let e = element("denoise_sigma.onnx", &[]);
    let mut hs = harness(&e, &rgb_caps(w, h));
    let s = stride(w, 3);
    let mut state = 12345u64;
    let mut gauss = || {
        // Box-Muller on a small LCG: independent of the engine's generator.
        let mut u = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (a, b) = (u(), u());
        (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
    };
    for i in 0..6 {
        let mut data = vec![0u8; s * h];
        for y in 0..h {
            for x in 0..w * 3 {
                data[y * s + x] = (100.0 + 10.0 * gauss()).round().clamp(0.0, 255.0) as u8;
            }
        }
        let mut b = gst::Buffer::from_mut_slice(data);
        b.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(40 * i));
        hs.push(b).unwrap();
    }
    for _ in 0..6 {
        hs.pull().unwrap();
    }
    let sigma = e.property::<f64>("noise-estimate");
    assert!((sigma - 10.0).abs() < 2.0, "estimated sigma {sigma}, true 10");
}

#[test]
fn segmentation_only_model_passes_the_frame_and_upsamples_logits() {
    // 4x4 blocks: red-dominant, green-dominant, blue-dominant and dark grey (class 3).
    let (w, h) = (16, 4);
    let e = element("seg_logits.onnx", &[]);
    let mut hs = harness(&e, &rgb_caps(w, h));
    let colours = [[230u8, 20, 20], [20, 230, 20], [20, 20, 230], [60, 60, 60]];
    let s = stride(w, 3);
    let mut data = vec![0u8; s * h];
    for y in 0..h {
        for x in 0..w {
            data[y * s + x * 3..y * s + x * 3 + 3].copy_from_slice(&colours[x / 4]);
        }
    }
    let mut b = gst::Buffer::from_mut_slice(data.clone());
    b.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    hs.push(b).unwrap();
    let out = hs.pull().unwrap();
    // output=denoised with a segmentation-only model: the input frame, unchanged.
    assert_eq!(&*out.map_readable().unwrap(), &data[..]);
    let (mask, ms) = mask_of(&out);
    for y in 0..h {
        // Block centres are unambiguous after bilinear upsampling of the 4x4 means.
        for (block, x) in [1usize, 6, 9, 14].iter().enumerate() {
            assert_eq!(mask[y * ms + x], block as u8, "class at ({x},{y})");
        }
    }
}

/// `appsrc ! denoiseseg (joint model, `props`)` with an appsink on each src pad, a
/// queue before each (one thread pushes both pads, so, as after a demuxer or a tee,
/// each branch needs a queue for both sinks to preroll): (pipeline, src, out, mask).
fn mask_pipeline(
    w: usize,
    h: usize,
    props: &str,
) -> (gst::Pipeline, gst_app::AppSrc, gst_app::AppSink, gst_app::AppSink) {
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps={caps} ! denoiseseg name=d model={m} execution-provider=cpu {props} \
         ! queue ! appsink name=out sync=false d.mask ! queue ! appsink name=mask sync=false",
        caps = rgb_caps(w, h).replace(',', "\\,"),
        m = model("joint.onnx"),
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let by = |name: &str| pipeline.by_name(name).unwrap();
    let src = by("src").downcast::<gst_app::AppSrc>().unwrap();
    let out = by("out").downcast::<gst_app::AppSink>().unwrap();
    let mask = by("mask").downcast::<gst_app::AppSink>().unwrap();
    (pipeline, src, out, mask)
}

#[test]
fn upstream_metas_travel_with_the_frame_and_its_class_map() {
    init();
    let (w, h) = (24, 16);
    let ntp = gst::Caps::new_empty_simple("timestamp/x-ntp");
    let tc = gst_video::ValidVideoTimeCode::new(
        gst::Fraction::new(25, 1),
        None,
        gst_video::VideoTimeCodeFlags::empty(),
        1,
        2,
        3,
        4,
        0,
    )
    .unwrap();
    let frame = |i: usize| {
        let mut b = rgb_frame(i, w, h);
        {
            let b = b.get_mut().unwrap();
            gst::ReferenceTimestampMeta::add(b, &ntp, gst::ClockTime::from_seconds(7 + i as u64), None);
            gst_video::VideoTimeCodeMeta::add(b, &tc);
            gst_video::VideoRegionOfInterestMeta::add(b, "face", (2, 3, 8, 5));
            gst_video::VideoMeta::add(
                b,
                gst_video::VideoFrameFlags::empty(),
                gst_video::VideoFormat::Rgb,
                w as u32,
                h as u32,
            )
            .unwrap();
        }
        b
    };
    let check = |out: &gst::BufferRef, i: usize, what: &str| {
        let r = out
            .meta::<gst::ReferenceTimestampMeta>()
            .unwrap_or_else(|| panic!("{what} {i}: no reference timestamp"));
        assert_eq!(
            (r.reference(), r.timestamp()),
            (ntp.as_ref(), gst::ClockTime::from_seconds(7 + i as u64)),
            "{what} {i}"
        );
        let t = out
            .meta::<gst_video::VideoTimeCodeMeta>()
            .unwrap_or_else(|| panic!("{what} {i}: no timecode"));
        assert_eq!(t.tc().to_string(), "01:02:03:04", "{what} {i}");
        let roi = out
            .meta::<gst_video::VideoRegionOfInterestMeta>()
            .unwrap_or_else(|| panic!("{what} {i}: no region of interest"));
        assert_eq!(roi.rect(), (2, 3, 8, 5), "{what} {i}");
        assert!(
            out.iter_meta::<gst_video::VideoMeta>().count() <= 1,
            "{what} {i}: one video meta at most"
        );
    };

    // The frame (with its class map meta, once) through the harness.
    let e = element("joint.onnx", &[]);
    let mut hs = harness(&e, &rgb_caps(w, h));
    hs.push(frame(0)).unwrap();
    let out = hs.pull().unwrap();
    check(&out, 0, "frame");
    let maps = out
        .iter_meta::<gst::Meta>()
        .filter(|m| m.api().name().contains(MASK_META))
        .count();
    assert_eq!(maps, 1, "one class map meta");
    drop(hs);

    // The mask pad's class maps carry them too.
    let (pipeline, src, _, mask) = mask_pipeline(w, h, "");
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..3 {
        src.push_buffer(frame(i)).unwrap();
    }
    src.end_of_stream().unwrap();
    let mut n = 0;
    while let Ok(s) = mask.pull_sample() {
        check(s.buffer().unwrap(), n, "class map");
        n += 1;
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(n, 3);
}

#[test]
fn mask_pad_carries_every_frame_with_the_same_timestamps() {
    init();
    let (w, h) = (24, 16);
    let (pipeline, src, out, mask) = mask_pipeline(w, h, "class-confirm-frames=1 workers=2");
    pipeline.set_state(gst::State::Playing).unwrap();
    let n = 15;
    for i in 0..n {
        src.push_buffer(rgb_frame(i, w, h)).unwrap();
    }
    src.end_of_stream().unwrap();
    let mut outs = Vec::new();
    while let Ok(s) = out.pull_sample() {
        outs.push(s.buffer_owned().unwrap());
    }
    let mut masks = Vec::new();
    while let Ok(s) = mask.pull_sample() {
        masks.push(s);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(outs.len(), n);
    assert_eq!(masks.len(), n);
    let caps = masks[0].caps().unwrap().structure(0).unwrap().to_owned();
    assert_eq!(caps.get::<&str>("format").unwrap(), "GRAY8");
    assert_eq!(caps.get::<i32>("width").unwrap(), w as i32);
    for (i, (o, m)) in outs.iter().zip(&masks).enumerate() {
        let mb = m.buffer().unwrap();
        assert_eq!(o.pts(), mb.pts());
        assert_eq!(mb.pts(), Some(gst::ClockTime::from_mseconds(40 * i as u64)));
        let map = mb.map_readable().unwrap();
        let ms = stride(w, 1);
        for y in 0..h {
            for x in 0..w {
                assert_eq!(map[y * ms + x], argmax(pixel(i, x, y)));
            }
        }
    }
}

#[test]
fn leaky_drops_frames_instead_of_blocking_and_counts_them() {
    // Big frames, one worker and two frames in flight: pushing is far faster than
    // processing, so a leaky element must drop instead of blocking the pusher.
    let (w, h) = (1280, 720);
    let e = element(
        "joint.onnx",
        &[("leaky", "true"), ("max-in-flight", "2"), ("workers", "1")],
    );
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let mut hs = harness(&e, &rgb_caps(w, h));
    let frame = rgb_frame(0, w, h);
    let n = 40;
    for i in 0..n {
        let mut b = frame.copy();
        b.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(40 * i));
        hs.push(b).unwrap();
    }
    hs.push_event(gst::event::Eos::new());
    let mut outs = 0;
    let mut last_pts = None;
    let mut disconts = 0;
    while let Ok(Some(b)) = hs.pull_until_eos() {
        assert!(b.pts() > last_pts, "order kept");
        last_pts = b.pts();
        if b.flags().contains(gst::BufferFlags::DISCONT) {
            disconts += 1;
        }
        outs += 1;
    }
    let dropped = e.property::<u64>("frames-dropped");
    assert!(dropped > 0, "no frame dropped");
    assert!(disconts > 0, "frames after a drop are marked DISCONT");
    assert_eq!(outs + dropped, n, "every frame is either out or counted as dropped");
    // Each drop is posted as QoS with the dropped frame's own timestamp.
    let mut qos_pts = Vec::new();
    while let Some(m) = bus.pop_filtered(&[gst::MessageType::Qos]) {
        if let gst::MessageView::Qos(q) = m.view() {
            let (_live, _rt, _st, ts, _dur) = q.get();
            qos_pts.push(ts.expect("QoS names the dropped frame's timestamp"));
        }
    }
    assert_eq!(qos_pts.len() as u64, dropped);
    assert!(qos_pts.iter().all(|t| t.mseconds() % 40 == 0 && t.mseconds() < 40 * n));
}

#[test]
fn state_cycling_with_frames_in_flight_never_hangs() {
    init();
    let (w, h) = (320, 240);
    for _ in 0..3 {
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc is-live=false ! video/x-raw,format=RGB,width={w},height={h} ! denoiseseg model={m} \
             execution-provider=cpu max-in-flight=4 ! fakesink sync=false",
            m = model("joint.onnx"),
        ))
        .unwrap();
        for state in [
            gst::State::Playing,
            gst::State::Paused,
            gst::State::Playing,
            gst::State::Ready,
            gst::State::Playing,
        ] {
            pipeline.set_state(state).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        }
        assert_eq!(
            pipeline.set_state(gst::State::Null),
            Ok(gst::StateChangeSuccess::Success)
        );
    }
}

#[test]
fn missing_model_is_refused_at_start_with_its_path() {
    let e = element("does-not-exist.onnx", &[]);
    let msg = start_error(&e);
    assert!(msg.contains("does-not-exist.onnx"), "{msg}");
}

#[test]
fn sidecar_without_outputs_is_refused_at_start() {
    let e = element("no_outputs.onnx", &[]);
    let msg = start_error(&e);
    assert!(msg.contains("[outputs] names none"), "{msg}");
}

fn stream_error(model_name: &str) -> String {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,format=RGB,width=32,height=16 ! denoiseseg model={m} \
         execution-provider=cpu ! fakesink",
        m = model(model_name),
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("error or EOS within 30 s");
    pipeline.set_state(gst::State::Null).unwrap();
    match msg.view() {
        gst::MessageView::Error(err) => format!("{} | {:?}", err.error(), err.debug()),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn corrupt_model_is_a_clear_error_not_a_hang() {
    let msg = stream_error("corrupt.onnx");
    assert!(msg.contains("corrupt.onnx"), "{msg}");
}

#[test]
fn model_breaking_the_contract_says_which_part() {
    let msg = stream_error("wrong_rank.onnx");
    assert!(msg.contains("rank 4"), "{msg}");
}

#[test]
fn explicit_gpu_provider_without_gpu_library_is_an_error() {
    // The CPU library has neither CUDA nor TensorRT: asking for one must fail, not fall back.
    if denoiseseg::runtime::provider_compiled_in(denoiseseg::runtime::Provider::Cuda) {
        return; // a GPU library is installed: covered by the GPU check in the README
    }
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=32,height=16 ! denoiseseg model={m} \
         execution-provider=cuda ! fakesink",
        m = model("joint.onnx"),
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("error within 30 s");
    pipeline.set_state(gst::State::Null).unwrap();
    let gst::MessageView::Error(err) = msg.view() else {
        panic!("expected an error, got {msg:?}")
    };
    let text = format!("{} {:?}", err.error(), err.debug());
    assert!(text.contains("cuda"), "{text}");
}

#[test]
fn max_in_flight_below_batch_size_is_refused() {
    let e = element("joint.onnx", &[("batch-size", "4"), ("max-in-flight", "2")]);
    let msg = start_error(&e);
    assert!(msg.contains("max-in-flight"), "{msg}");
}

#[test]
fn max_in_flight_follows_batch_size_and_concurrent_runs_until_set() {
    let e = element("joint.onnx", &[]);
    let spec = e.find_property("max-in-flight").unwrap();
    assert_eq!(spec.default_value().get::<u32>().unwrap(), 8);
    let read = |e: &gst::Element| e.property::<u32>("max-in-flight");
    assert_eq!(read(&e), 8);
    e.set_property("batch-size", 4u32);
    assert_eq!(read(&e), 8);
    e.set_property("batch-size", 8u32);
    assert_eq!(read(&e), 16, "room for the next batch while one runs");
    e.set_property("concurrent-runs", 2u32);
    assert_eq!(read(&e), 32);
    e.set_property("batch-size", 64u32);
    e.set_property("concurrent-runs", 8u32);
    assert_eq!(read(&e), 1024, "the most there is");
    e.set_property("max-in-flight", 12u32);
    e.set_property("batch-size", 4u32);
    assert_eq!(read(&e), 12, "once set it stays");

    // A batch above the old fixed default (8) runs without setting max-in-flight.
    let (w, h) = (16, 8);
    let e = element("joint.onnx", &[("batch-size", "16"), ("batch-timeout", "10000")]);
    assert_eq!(read(&e), 32);
    let mut hs = harness(&e, &rgb_caps(w, h));
    for i in 0..16 {
        hs.push(rgb_frame(i, w, h)).unwrap();
    }
    for i in 0..16 {
        check_joint(&hs.pull().unwrap(), i, w, h);
    }
    assert_eq!(e.property::<u64>("frames-processed"), 16);
}

#[test]
fn a_start_only_property_set_while_playing_keeps_its_value_and_warns_on_the_bus() {
    let (w, h) = (16, 8);
    let e = element("joint.onnx", &[("batch-size", "2")]);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let mut hs = harness(&e, &rgb_caps(w, h));
    hs.push(rgb_frame(0, w, h)).unwrap();
    check_joint(&hs.pull().unwrap(), 0, w, h);
    e.set_property("batch-size", 4u32);
    assert_eq!(e.property::<u32>("batch-size"), 2);
    let warning = bus
        .iter_timed_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Warning])
        .find_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .expect("a warning on the bus");
    assert!(
        warning.contains("'batch-size' can only be changed in NULL or READY"),
        "{warning}"
    );
    // A property that changes in PLAYING does, without a warning.
    e.set_property("noise-level", 10.0f64);
    assert_eq!(e.property::<f64>("noise-level"), 10.0);
    assert!(bus.pop_filtered(&[gst::MessageType::Warning]).is_none());
}

#[test]
fn a_mask_pad_on_a_model_that_does_not_segment_warns_at_start() {
    init();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=16,height=8 ! denoiseseg name=d model={} \
         ! queue ! fakesink d.mask ! queue ! fakesink",
        model("denoise_sigma.onnx")
    ))
    .unwrap();
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let mut warning = None;
    for m in bus.iter_timed_filtered(
        gst::ClockTime::from_seconds(20),
        &[
            gst::MessageType::Warning,
            gst::MessageType::Eos,
            gst::MessageType::Error,
        ],
    ) {
        match m.view() {
            gst::MessageView::Warning(w) => warning = Some(w.error().to_string()),
            _ => break,
        }
    }
    p.set_state(gst::State::Null).unwrap();
    let warning = warning.expect("a warning");
    assert!(
        warning.contains("does not segment: the mask pad carries no class maps"),
        "{warning}"
    );
}

#[test]
fn config_preset_sets_properties() {
    let dir = std::env::temp_dir().join(format!("dseg-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("preset.toml");
    std::fs::write(
        &path,
        "[denoiseseg]\nbatch-size = 3\nleaky = true\nnoise-level = 12.5\noutput = \"overlay\"\n",
    )
    .unwrap();
    let e = element("joint.onnx", &[]);
    e.set_property("config", path.display().to_string());
    assert_eq!(e.property::<u32>("batch-size"), 3);
    assert!(e.property::<bool>("leaky"));
    assert_eq!(e.property::<f64>("noise-level"), 12.5);
    let output = e.property_value("output");
    let (_, v) = gst::glib::EnumValue::from_value(&output).unwrap();
    assert_eq!(v.nick(), "overlay");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shipped_config_presets_name_only_real_properties_with_valid_values() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let props = denoiseseg::config::load_properties(&path).unwrap();
        assert!(!props.is_empty(), "{} sets nothing", path.display());
        let e = element("joint.onnx", &[]);
        for (name, value) in &props {
            let pspec = e
                .find_property(name)
                .unwrap_or_else(|| panic!("{}: no property '{name}'", path.display()));
            let v = gst::glib::Value::deserialize(value, pspec.value_type())
                .unwrap_or_else(|_| panic!("{}: '{value}' is not a valid {name}", path.display()));
            // An out-of-range value panics here (glib validates every set).
            e.set_property_from_value(name, &v);
            assert_eq!(
                e.property_value(name).serialize().unwrap(),
                v.serialize().unwrap(),
                "{}: {name} = {value} did not take",
                path.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 2, "expected the shipped presets in {}", dir.display());
}

#[test]
fn config_preset_with_bad_values_keeps_the_good_ones_and_fails_the_start_naming_the_bad() {
    let dir = std::env::temp_dir().join(format!("dseg-badconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[denoiseseg]\nbatch-size = 500\nframes-processed = 3\nnoise-level = \"loud\"\nworkers = 3\nnope = 1\n",
    )
    .unwrap();
    let e = element("joint.onnx", &[]);
    // Out of range, read-only, unparsable and unknown entries are not set (glib would
    // abort the process on the first two); the others are.
    e.set_property("config", path.display().to_string());
    assert_eq!(e.property::<u32>("batch-size"), 1);
    assert_eq!(e.property::<f64>("noise-level"), -1.0);
    assert_eq!(e.property::<u32>("workers"), 3);
    let msg = start_error(&e);
    for what in [
        path.display().to_string(),
        "batch-size = 500 is outside 1..=64".into(),
        "frames-processed is read-only".into(),
        "noise-level = 'loud'".into(),
        "no property 'nope'".into(),
    ] {
        assert!(msg.contains(&what), "{what} not in {msg}");
    }
    // A good preset set afterwards clears the error.
    std::fs::write(&path, "workers = 2\n").unwrap();
    e.set_property("config", path.display().to_string());
    e.set_state(gst::State::Paused).expect("starts");
    e.set_state(gst::State::Null).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
