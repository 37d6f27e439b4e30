//! The class map's stabilization over time (`class-confirm-frames`), on the `joint` test
//! model (class = the strongest RGB channel: 0 red, 1 green, 2 blue) with its blue class
//! marked as an object class in a copy of its sidecar.
use std::path::PathBuf;

mod common;
use common::{element_at, harness, mask_of, model, stride};
use gst::prelude::*;

const RED: [u8; 3] = [200, 10, 10];
const GREEN: [u8; 3] = [10, 200, 10];
const BLUE: [u8; 3] = [10, 10, 200];
const W: usize = 16;
const H: usize = 8;

/// The joint test model beside a sidecar that marks blue (class 2) as an object class.
fn joint_with_blue_objects() -> String {
    let dir = std::env::temp_dir().join(format!("denoiseseg-stabilize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let onnx = dir.join("joint.onnx");
    std::fs::copy(model("joint.onnx"), &onnx).unwrap();
    let sidecar = std::fs::read_to_string(PathBuf::from(model("joint.toml"))).unwrap();
    let marked = sidecar.replace("name = \"blue\"", "name = \"blue\"\nobject = true");
    assert_ne!(marked, sidecar, "the test sidecar names a blue class");
    std::fs::write(dir.join("joint.toml"), marked).unwrap();
    onnx.display().to_string()
}

/// A packed RGB frame, its left half `left` and its right half `right`.
fn halves(i: u64, left: [u8; 3], right: [u8; 3], discont: bool) -> gst::Buffer {
    let s = stride(W, 3);
    let mut data = vec![0u8; s * H];
    for y in 0..H {
        for x in 0..W {
            data[y * s + 3 * x..y * s + 3 * x + 3].copy_from_slice(if x < W / 2 { &left } else { &right });
        }
    }
    let mut b = gst::Buffer::from_mut_slice(data);
    let bm = b.get_mut().unwrap();
    bm.set_pts(gst::ClockTime::from_mseconds(40 * i));
    bm.set_duration(gst::ClockTime::from_mseconds(40));
    if discont {
        bm.set_flags(gst::BufferFlags::DISCONT);
    }
    b
}

/// The (left, right) classes of a src buffer's class map, checked uniform per half.
fn classes(out: &gst::BufferRef) -> (u8, u8) {
    let (mask, ms) = mask_of(out);
    let (l, r) = (mask[0], mask[W - 1]);
    for y in 0..H {
        for x in 0..W {
            assert_eq!(
                mask[y * ms + x],
                if x < W / 2 { l } else { r },
                "class map at ({x},{y})"
            );
        }
    }
    (l, r)
}

#[test]
fn background_flips_wait_for_confirmation_objects_change_at_once_and_the_overlay_shows_the_stabilized_map() {
    let e = element_at(
        &joint_with_blue_objects(),
        &[
            ("class-confirm-frames", "2"),
            ("output", "overlay"),
            ("overlay-alpha", "1.0"),
        ],
    );
    let mut h = harness(&e, &common::rgb_caps(W, H));
    // (left, right, DISCONT) -> the classes shown.
    type Step = ([u8; 3], [u8; 3], bool, (u8, u8));
    let steps: [Step; 7] = [
        (RED, RED, false, (0, 0)),
        // green for one frame: hidden; blue is an object: at once
        (GREEN, BLUE, false, (0, 2)),
        // the object left: the background shows at once
        (RED, RED, false, (0, 0)),
        (GREEN, RED, false, (0, 0)),
        // green held for two frames: shown
        (GREEN, RED, false, (1, 0)),
        (RED, RED, false, (1, 0)),
        // a discontinuity starts afresh: the frame's own map
        (RED, GREEN, true, (0, 1)),
    ];
    let palette = [[255u8, 0, 0], [0, 255, 0], [0, 0, 255]];
    for (i, (left, right, discont, want)) in steps.into_iter().enumerate() {
        assert_eq!(h.push(halves(i as u64, left, right, discont)), Ok(gst::FlowSuccess::Ok));
        let out = h.pull().expect("output frame");
        assert_eq!(classes(&out), want, "frame {i}");
        // Opaque overlay: each pixel is its shown class's colour.
        let map = out.map_readable().unwrap();
        let s = stride(W, 3);
        for (x, c) in [(0, want.0), (W - 1, want.1)] {
            assert_eq!(
                &map[s * (H - 1) + 3 * x..s * (H - 1) + 3 * x + 3],
                &palette[c as usize],
                "frame {i} x {x}"
            );
        }
        assert_eq!(common::mask_meta_count(&out), 1);
    }
}

#[test]
fn a_flush_starts_afresh_and_one_frame_maps_pass_through_unchanged_when_off() {
    let e = element_at(&joint_with_blue_objects(), &[("class-confirm-frames", "3")]);
    assert_eq!(e.property::<u32>("class-confirm-frames"), 3);
    let mut h = harness(&e, &common::rgb_caps(W, H));
    h.push(halves(0, RED, RED, false)).unwrap();
    assert_eq!(classes(&h.pull().unwrap()), (0, 0));
    h.push(halves(1, GREEN, GREEN, false)).unwrap();
    assert_eq!(classes(&h.pull().unwrap()), (0, 0));
    // A flushing seek: what came before says nothing of what follows.
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new())));
    h.push(halves(2, GREEN, GREEN, false)).unwrap();
    assert_eq!(classes(&h.pull().unwrap()), (1, 1));
    // Switched off in PLAYING: every frame's map as the model gives it.
    e.set_property("class-confirm-frames", 1u32);
    h.push(halves(3, RED, GREEN, false)).unwrap();
    assert_eq!(classes(&h.pull().unwrap()), (0, 1));
    h.push(halves(4, GREEN, RED, false)).unwrap();
    assert_eq!(classes(&h.pull().unwrap()), (1, 0));
}

#[test]
fn an_i420_overlay_of_a_stabilized_map_matches_the_unstabilized_path() {
    // On the first frame the stabilized map is the model's: the overlay blended in
    // Y'CbCr on the src task equals the one blended in RGB on the workers, up to rounding.
    let (w, h) = (W, H);
    let caps = format!("video/x-raw,format=I420,width={w},height={h},framerate=25/1");
    let frame = || {
        let mut data = vec![0u8; w * h * 3 / 2];
        for (i, v) in data.iter_mut().enumerate() {
            *v = (40 + (i * 37) % 170) as u8;
        }
        let mut b = gst::Buffer::from_mut_slice(data);
        b.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        b
    };
    let run = |confirm: &str| {
        let e = element_at(
            &model("joint.onnx"),
            &[
                ("class-confirm-frames", confirm),
                ("output", "overlay"),
                ("overlay-alpha", "0.6"),
            ],
        );
        let mut hs = harness(&e, &caps);
        hs.push(frame()).unwrap();
        let out = hs.pull().unwrap();
        let map = out.map_readable().unwrap().to_vec();
        (map, mask_of(&out).0)
    };
    let (stabilized, mask_s) = run("2");
    let (direct, mask_d) = run("1");
    assert_eq!(mask_s, mask_d);
    assert!(
        mask_d.iter().any(|&c| c != mask_d[0]),
        "the test frame has more than one class"
    );
    let worst = stabilized
        .iter()
        .zip(&direct)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(worst <= 2, "I420 overlays differ by {worst}");
}
