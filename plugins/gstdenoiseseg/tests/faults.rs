//! The fault suite: what a new user runs into when things go wrong (failed starts,
//! quick state cycles while the model loads, caps changes, GRAY8 on the mask branch,
//! broken presets, models that output NaN or class ids they do not define). Each test
//! failed before its fix. The tests take one lock, so that the thread accounting of one
//! is not disturbed by the elements of another.
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

mod common;
use common::{argmax, element, element_at, init, model, pixel, rgb_caps, rgb_frame, stride};
use gst::prelude::*;
use gst_check::Harness;

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shipped default model: its session takes long enough to build that a stop
/// lands in the middle of the build.
fn default_model() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/denoiseseg-sdb-small.onnx")
        .display()
        .to_string()
}

/// Threads of this process started by a frame queue (named `dseg-*`).
fn queue_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("dseg-"))
        .collect()
}

fn launch(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}

fn app_src(p: &gst::Pipeline) -> gst_app::AppSrc {
    p.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap()
}

fn app_sink(p: &gst::Pipeline, name: &str) -> gst_app::AppSink {
    p.by_name(name).unwrap().downcast::<gst_app::AppSink>().unwrap()
}

/// Runs the pipeline to EOS or an error; the first error's text, if any.
fn wait_end(p: &gst::Pipeline) -> Option<String> {
    let msg = p
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Error, gst::MessageType::Eos],
        )
        .expect("EOS or an error within 60 s");
    match msg.view() {
        gst::MessageView::Error(e) => Some(format!("{} | {:?}", e.error(), e.debug())),
        _ => None,
    }
}

// -------------------------------------------------------------------------
// Failed starts and state cycles while the model loads
// -------------------------------------------------------------------------

/// The plugin as the build leaves it, for gst-launch-1.0 in a child process.
fn plugin_dir() -> PathBuf {
    // target/<profile>/deps/faults-<hash> -> target/<profile>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    assert!(
        dir.join("libgstdenoiseseg.so").is_file(),
        "no libgstdenoiseseg.so in {}: build the workspace first (make build)",
        dir.display()
    );
    dir
}

#[test]
fn a_failed_start_never_crashes_the_process_on_exit() {
    let _s = serial();
    // The source fails while the default model's session is being built on the
    // queue's thread; gst-launch then exits at once. Before the fix the build
    // outlived the element and crashed the exit handlers: here 16 of 60 runs, four
    // at a time (the load widens the window).
    let dir = plugin_dir();
    let (rounds, parallel) = (6, 4);
    let mut failures = Vec::new();
    for round in 0..rounds {
        let children: Vec<_> = (0..parallel)
            .map(|_| {
                Command::new("timeout")
                    .args([
                        "60",
                        "gst-launch-1.0",
                        "--no-fault",
                        "filesrc",
                        "location=/nonexistent.mp4",
                    ])
                    .args(["!", "decodebin", "!", "videoconvert", "!", "denoiseseg"])
                    .arg(format!("model={}", default_model()))
                    .args(["!", "fakesink"])
                    .env("GST_PLUGIN_PATH", &dir)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("gst-launch-1.0 starts")
            })
            .collect();
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            if out.status.signal().is_some() || out.status.code() == Some(124) {
                failures.push(format!("round {round} run {i}: {:?}\n{text}", out.status));
            } else {
                assert!(
                    text.contains("/nonexistent.mp4"),
                    "run failed for another reason: {text}"
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs crashed or hung:\n{}",
        failures.len(),
        rounds * parallel,
        failures.join("\n")
    );
}

#[test]
fn quick_start_stop_cycles_while_the_model_loads_leave_no_thread_behind() {
    let _s = serial();
    let e = element_at(&default_model(), &[]);
    for i in 0..30 {
        e.set_state(gst::State::Paused).unwrap();
        if i % 3 == 0 {
            std::thread::sleep(Duration::from_millis(i as u64));
        }
        assert_eq!(e.set_state(gst::State::Null), Ok(gst::StateChangeSuccess::Success));
        let left = queue_threads();
        assert!(left.is_empty(), "cycle {i}: threads outlived the stop: {left:?}");
    }
}

// -------------------------------------------------------------------------
// The mask pad
// -------------------------------------------------------------------------

/// Frames through `appsrc ! denoiseseg (joint) ! queue ! fakesink d.mask ! <mask_branch>`;
/// the mask samples that reach the appsink `mask`.
fn masks_through(mask_branch: &str, props: &str, frames: &[(usize, usize)]) -> Result<Vec<gst::Sample>, String> {
    let p = launch(&format!(
        "appsrc name=src format=time ! denoiseseg name=d model={m} execution-provider=cpu class-confirm-frames=1 {props} \
         ! queue ! fakesink d.mask ! {mask_branch}",
        m = model("joint.onnx"),
    ));
    let src = app_src(&p);
    let sink = app_sink(&p, "mask");
    p.set_state(gst::State::Playing).unwrap();
    let mut size = None;
    for (i, &(w, h)) in frames.iter().enumerate() {
        if size != Some((w, h)) {
            src.set_caps(Some(&rgb_caps(w, h).parse::<gst::Caps>().unwrap()));
            size = Some((w, h));
        }
        if src.push_buffer(rgb_frame(i, w, h)).is_err() {
            break;
        }
    }
    let _ = src.end_of_stream();
    let mut samples = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        samples.push(s);
    }
    let end = wait_end(&p);
    p.set_state(gst::State::Null).unwrap();
    match end {
        Some(err) => Err(err),
        None => Ok(samples),
    }
}

/// Checks that each mask sample's buffer is the size its caps say and holds the class
/// map of the frame it carries (frame `offset`, of the size in `frames`).
fn check_masks(samples: &[gst::Sample], frames: &[(usize, usize)]) {
    assert_eq!(samples.len(), frames.len(), "one mask per frame");
    for s in samples {
        let info = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
        assert_eq!(info.format(), gst_video::VideoFormat::Gray8);
        let b = s.buffer().unwrap();
        let i = b.offset() as usize;
        let (w, h) = frames[i];
        assert_eq!(
            (info.width() as usize, info.height() as usize, b.size()),
            (w, h, stride(w, 1) * h),
            "frame {i}: mask caps and buffer describe another frame"
        );
        let map = b.map_readable().unwrap();
        for y in 0..h {
            for x in 0..w {
                assert_eq!(map[y * stride(w, 1) + x], argmax(pixel(i, x, y)), "frame {i} ({x},{y})");
            }
        }
    }
}

#[test]
fn a_gray8_capsfilter_or_appsink_on_the_mask_branch_negotiates() {
    let _s = serial();
    let frames = vec![(24, 16); 6];
    for branch in [
        "video/x-raw,format=GRAY8 ! queue ! appsink name=mask sync=false",
        "queue ! appsink name=mask sync=false caps=\"video/x-raw,format=GRAY8\"",
    ] {
        let masks = masks_through(branch, "", &frames).unwrap_or_else(|e| panic!("{branch}: {e}"));
        check_masks(&masks, &frames);
    }
}

#[test]
fn mask_caps_follow_their_frames_through_caps_changes_within_max_in_flight() {
    let _s = serial();
    // Sizes change every one to three frames, well within the 8 frames in flight.
    let sizes = [(24, 16), (40, 8), (16, 30), (33, 17)];
    let mut frames = Vec::new();
    let mut k = 0usize;
    while frames.len() < 60 {
        let run = 1 + k * 7 % 3;
        frames.extend(std::iter::repeat_n(sizes[k % sizes.len()], run));
        k += 1;
    }
    let masks = masks_through(
        "queue ! appsink name=mask sync=false",
        "max-in-flight=8 workers=3",
        &frames,
    )
    .unwrap();
    check_masks(&masks, &frames);
}

// -------------------------------------------------------------------------
// Config presets
// -------------------------------------------------------------------------

/// The start error of a pipeline whose element reads the preset `name` holding `text`
/// (none: the file does not exist), and the preset's path.
fn config_error(name: &str, text: Option<&str>) -> (String, String) {
    let dir = std::env::temp_dir().join(format!("dseg-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    match text {
        Some(t) => std::fs::write(&path, t).unwrap(),
        None => {
            let _ = std::fs::remove_file(&path);
        }
    }
    // As gst-launch-1.0 does it: the property is set before the element has a bus.
    let p = launch(&format!(
        "videotestsrc num-buffers=2 ! video/x-raw,format=RGB,width=32,height=16 \
         ! denoiseseg model={m} config={c} ! fakesink",
        m = model("joint.onnx"),
        c = path.display()
    ));
    let _ = p.set_state(gst::State::Playing);
    let err = wait_end(&p).expect("the start fails");
    p.set_state(gst::State::Null).unwrap();
    (err, path.display().to_string())
}

#[test]
fn a_config_that_cannot_be_read_fails_the_start_naming_the_file_and_the_problem() {
    let _s = serial();
    let (err, path) = config_error("missing", None);
    assert!(err.contains(&path) && err.contains("No such file"), "{err}");
    let (err, path) = config_error("broken", Some("[denoiseseg]\nbatch-size = \n"));
    assert!(err.contains(&path) && err.contains("line 2"), "{err}");
    let (err, path) = config_error("bad-entries", Some("[denoiseseg]\nbatch-size = 500\nnope = 1\n"));
    assert!(
        err.contains(&path) && err.contains("batch-size") && err.contains("'nope'"),
        "{err}"
    );
}

// -------------------------------------------------------------------------
// Invalid model outputs
// -------------------------------------------------------------------------

/// Pushes `n` frames through a harness on `model_name`; the outputs and the warnings posted.
fn run_model(model_name: &str, w: usize, h: usize, n: usize) -> (Vec<gst::Buffer>, Vec<String>) {
    let e = element(model_name, &[]);
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    let mut hs = Harness::with_element(&e, Some("sink"), Some("src"));
    hs.set_src_caps_str(&rgb_caps(w, h));
    hs.play();
    for i in 0..n {
        hs.push(rgb_frame(i, w, h)).unwrap();
    }
    let outs: Vec<_> = (0..n).map(|_| hs.pull().expect("output frame")).collect();
    let warnings = std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .map(|m| match m.view() {
            gst::MessageView::Warning(w) => format!("{} | {:?}", w.error(), w.debug()),
            _ => unreachable!(),
        })
        .collect();
    (outs, warnings)
}

fn class_map(out: &gst::BufferRef) -> (Vec<u8>, usize) {
    let meta = gst::meta::CustomMeta::from_buffer(out, "DenoisesegMaskMeta").expect("class map meta");
    let s = meta.structure();
    let mask = s.get::<gst::Buffer>("mask").unwrap();
    let bytes = mask.map_readable().unwrap().to_vec();
    (bytes, s.get::<u32>("stride").unwrap() as usize)
}

#[test]
fn nan_in_denoised_keeps_the_input_and_class_ids_beyond_the_classes_become_zero_with_one_warning_each() {
    let _s = serial();
    // faulty.onnx: denoised = sqrt(x - 0.5), NaN below 0.5; labels = 2 * argmax: 4 is no class.
    let (w, h, n) = (20, 12, 4);
    let (outs, warnings) = run_model("faulty.onnx", w, h, n);
    for (i, out) in outs.iter().enumerate() {
        let map = out.map_readable().unwrap();
        let (mask, ms) = class_map(out);
        for y in 0..h {
            for x in 0..w {
                let p = pixel(i, x, y);
                for c in 0..3 {
                    let v = p[c] as f64 / 255.0;
                    let want = if v < 0.5 { p[c] as f64 } else { (v - 0.5).sqrt() * 255.0 };
                    let got = map[y * stride(w, 3) + x * 3 + c] as f64;
                    assert!(
                        (got - want).abs() <= 1.0,
                        "frame {i} ({x},{y}) channel {c}: {got} for {want}"
                    );
                }
                let want = match argmax(p) {
                    2 => 0, // id 4: outside the 3 classes
                    a => 2 * a,
                };
                assert_eq!(mask[y * ms + x], want, "frame {i} class at ({x},{y})");
            }
        }
    }
    assert_eq!(warnings.len(), 2, "one warning per kind, not per frame: {warnings:#?}");
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("NaN or infinite") && w.contains("denoised")),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("outside its 3 classes") && w.contains("(red)")),
        "{warnings:#?}"
    );
}

#[test]
fn nan_logits_never_win_the_argmax_and_are_reported_once() {
    let _s = serial();
    // nan_logits.onnx: logits = sqrt(x - 0.5), NaN where a channel is below 0.5.
    let (w, h, n) = (20, 12, 3);
    let (outs, warnings) = run_model("nan_logits.onnx", w, h, n);
    for (i, out) in outs.iter().enumerate() {
        let (mask, ms) = class_map(out);
        for y in 0..h {
            for x in 0..w {
                let p = pixel(i, x, y);
                // The strongest channel of those at 0.5 or more (the first on ties); none: 0.
                let mut want = 0;
                let mut best = None;
                for (c, &v) in p.iter().enumerate() {
                    if v as f64 / 255.0 >= 0.5 && best.is_none_or(|b| v > b) {
                        best = Some(v);
                        want = c as u8;
                    }
                }
                assert_eq!(mask[y * ms + x], want, "frame {i} class at ({x},{y}) of {p:?}");
            }
        }
    }
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("NaN values in its logits"), "{warnings:#?}");
}
