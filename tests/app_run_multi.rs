//! End-to-end tests of `denoiseseg run` with several inputs on one shared engine: the
//! built binary on short clips made here with gst-launch-1.0. Needs `cargo build
//! --release --workspace` first (the binary loads the plugin from beside itself).
#![cfg(feature = "cli")]
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::{decode, fails_cleanly, gst_launch, interrupt_app, run, stderr, test_clip, test_model, tmp};

/// The width and height of the first video stream of `path`, from its decoded caps.
fn video_size(path: &Path) -> (usize, usize) {
    let o = Command::new("gst-launch-1.0")
        .args(["-v", "filesrc", &format!("location={}", path.display())])
        .args(["!", "decodebin", "!", "fakesink"])
        .output()
        .expect("gst-launch-1.0 runs");
    let text = String::from_utf8_lossy(&o.stdout);
    let caps = text
        .lines()
        .find(|l| l.contains("fakesink") && l.contains("video/x-raw"))
        .unwrap_or_else(|| panic!("no decoded caps for {}:\n{text}", path.display()));
    let field = |name: &str| -> usize {
        let rest = &caps[caps.find(&format!("{name}=(int)")).expect(name) + name.len() + 6..];
        rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())]
            .parse()
            .unwrap()
    };
    (field("width"), field("height"))
}

#[test]
fn several_inputs_share_one_engine_into_a_grid_and_per_stream_files() {
    let dir = tmp("multi");
    let (w, h) = (64, 32);
    // Three streams of different lengths; the second all red and the third all blue,
    // so that their class maps tell whether any frame went to another stream.
    let lengths = [6, 8, 10];
    let clips: Vec<String> = [("a.mkv", "smpte"), ("b.mkv", "red"), ("c.mkv", "blue")]
        .iter()
        .zip(lengths)
        .map(|((name, pattern), n)| test_clip(&dir, name, pattern, n, (w, h), 25).display().to_string())
        .collect();
    std::fs::create_dir(dir.join("out")).unwrap();
    let grid = dir.join("grid.mp4");
    let outputs = dir.join("out/cam{}.mkv");
    let masks = dir.join("out/classes{}.mkv");
    let m = test_model("joint.onnx");
    let mut args = vec!["run"];
    args.extend(clips.iter().map(String::as_str));
    args.extend([
        "-o",
        grid.to_str().unwrap(),
        "--tile",
        "64x32",
        "--outputs",
        outputs.to_str().unwrap(),
        "--mask-output",
        masks.to_str().unwrap(),
        "--model",
        &m,
        "--provider",
        "cpu",
        // The engine waits this long for a batch to fill from the three streams, so
        // that batching across streams does not depend on the machine's pace.
        "--batch-timeout",
        "200",
        "--json",
        "-",
    ]);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));

    // One engine for the three streams, batches filled from several of them (batch-size
    // defaults to the number of inputs).
    let engine = &report["engine"];
    assert_eq!(engine["model_instance_id"], "denoiseseg-run", "{report}");
    assert_eq!(engine["engine_streams"], 3, "{report}");
    assert_eq!(engine["batch_size"], 3, "{report}");
    let mbf = engine["mean_batch_frames"].as_f64().unwrap();
    assert!(mbf > 1.0 && mbf <= 3.0, "mean-batch-frames {mbf}: {report}");
    assert!(err.contains("one engine for 3 streams"), "{err}");

    // Each stream: every frame, in its own files, with its own class maps.
    let streams = report["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 3);
    for (i, (s, n)) in streams.iter().zip(lengths).enumerate() {
        assert_eq!(s["frames"], n, "stream {i}: {report}");
        assert_eq!(s["dropped"], 0, "stream {i}: {report}");
        assert!(
            err.contains(&format!("stream {i} {}: {n} frames, 0 dropped", clips[i])),
            "{err}"
        );
        let out = dir.join(format!("out/cam{i}.mkv"));
        assert_eq!(decode(&out, "RGB", w, h).len(), n, "{}", out.display());
        let classes = decode(&dir.join(format!("out/classes{i}.mkv")), "GRAY8", w, h);
        assert_eq!(classes.len(), n, "stream {i}'s class maps");
        // The joint test model labels each pixel with its strongest channel.
        let only = match i {
            1 => Some(0),
            2 => Some(2),
            _ => None,
        };
        if let Some(class) = only {
            assert!(
                classes.iter().all(|f| f.iter().all(|&c| c == class)),
                "stream {i}: a frame of another stream in its class maps"
            );
        }
    }
    // The grid: 2x2 tiles of 64x32, as long as the longest stream.
    assert_eq!(video_size(&grid), (128, 64));
    assert_eq!(decode(&grid, "RGB", 128, 64).len(), 10);
    assert_eq!(report["mosaic"]["frames"], 10, "{report}");
    assert_eq!(report["frames"], 24, "{report}");
}

#[test]
fn two_inputs_without_outputs_and_a_given_batch_size() {
    let dir = tmp("multi-plain");
    let a = test_clip(&dir, "a.mkv", "smpte", 4, (32, 16), 25);
    let b = test_clip(&dir, "b.mkv", "ball", 7, (48, 16), 25);
    let m = test_model("joint.onnx");
    let json = dir.join("report.json");
    let o = run(&[
        "run",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--model",
        &m,
        "--batch-size",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["engine"]["engine_streams"], 2, "{report}");
    assert_eq!(report["engine"]["batch_size"], 1, "{report}");
    assert_eq!(report["engine"]["mean_batch_frames"], 1.0, "{report}");
    assert_eq!(report["streams"][0]["frames"], 4, "{report}");
    assert_eq!(report["streams"][1]["frames"], 7, "{report}");
    assert!(report["mosaic"].is_null(), "{report}");
}

#[test]
fn several_inputs_print_one_branch_each_on_one_engine() {
    let dir = tmp("multi-print");
    let a = test_clip(&dir, "a.mkv", "smpte", 2, (32, 16), 25);
    let a = a.to_str().unwrap();
    let out = dir.join("o{}.mp4");
    let o = run(&[
        "run",
        a,
        a,
        a,
        a,
        a,
        "-o",
        "screen",
        "--view",
        "overlay",
        "--outputs",
        out.to_str().unwrap(),
        "--print-pipeline",
        "--model",
        &test_model("joint.onnx"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let p = stderr(&o);
    // Five tiles on a 3x2 grid of the default 640x360 tiles.
    assert!(p.contains("video/x-raw,width=1920,height=720"), "{p}");
    assert!(p.contains("sink_4::xpos=640 sink_4::ypos=360"), "{p}");
    assert_eq!(
        p.matches("model-instance-id=denoiseseg-run output=overlay").count(),
        5,
        "{p}"
    );
    for i in 0..5 {
        // The printed pipeline writes the file itself (the app writes a partial file
        // until the first frame).
        let file = dir.join(format!("o{i}.mp4"));
        assert!(p.contains(&format!("location=\"{}\"", file.display())), "{p}");
    }
}

#[test]
fn several_inputs_errors_are_one_line_naming_the_input() {
    let dir = tmp("multi-errors");
    let clip = test_clip(&dir, "a.mkv", "smpte", 2, (32, 16), 25);
    let c = clip.to_str().unwrap();
    let m = test_model("joint.onnx");
    let masks = dir.join("m.mkv");
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", c, c, "--mask-output", masks.to_str().unwrap()],
            "--mask-output",
        ),
        (
            &["run", c, c, "--outputs", "cam.mp4"],
            "with 2 inputs, give a pattern with {}",
        ),
        (&["run", c, c, "--outputs", "cam{}.avi"], "give an .mp4 or .mkv file"),
        (
            &["run", c, "/no/such/clip.mp4"],
            "input 1: no such file: /no/such/clip.mp4",
        ),
        (&["run", c, c, "--view", "mosaic"], "--view mosaic shows one input"),
        (&["run", c, "--tile", "64x32"], "--tile applies to several inputs"),
        (
            &["run", c, c, "-o", "g.mp4", "--tile", "63x32"],
            "even width and height",
        ),
        (
            &["run", c, c, "--rtsp-latency", "100"],
            "--rtsp-latency applies to rtsp:// inputs only",
        ),
        (
            &["run", c, c, "--outputs", "{}.mkv", "--mask-output", "{}.mkv"],
            "are the same file",
        ),
        (
            &["run", c, c, "--set", "model-instance-id=mine"],
            "shares one engine under its own id (denoiseseg-run)",
        ),
    ];
    for (args, want) in cases {
        fails_cleanly(&[args, &["--model", &m][..]].concat(), want);
    }
    let many: Vec<&str> = std::iter::once("run").chain(std::iter::repeat_n(c, 17)).collect();
    fails_cleanly(&many, "17 inputs: a run takes at most 16");
    // An input that fails once running: the other stream goes on, and the run then
    // fails naming that input.
    let bad = dir.join("not-a-video.mkv");
    std::fs::write(&bad, "not a video").unwrap();
    let o = run(&["run", c, bad.to_str().unwrap(), "--model", &m]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("stream 0 {c}: 2 frames, 0 dropped\n")), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.contains(&format!("input 1 ({})", bad.display())), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A camera that is not there: its stream ends, and the run fails naming it, with
    // the reason.
    let o = run(&[
        "run",
        c,
        "rtsp://127.0.0.1:1/none",
        "--rtsp-transport",
        "tcp",
        "--model",
        &m,
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.contains("input 1 (rtsp://127.0.0.1:1/none)"), "{err}");
    assert!(last.contains("Failed to connect"), "{err}");
    assert!(err.contains(&format!("stream 0 {c}: 2 frames, 0 dropped\n")), "{err}");
    // The shared engine's own failure (a model that cannot load) is every stream's:
    // it names the model, not an input.
    let broken = dir.join("broken.onnx");
    std::fs::write(&broken, "not a model").unwrap();
    std::fs::copy(Path::new(&m).with_extension("toml"), dir.join("broken.toml")).unwrap();
    let o = run(&["run", c, c, "--model", broken.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.contains("cannot load model") && !last.contains("input "), "{err}");
}

/// A YUV4MPEG clip `dir/name` of `good` frames of `w`x`h` and then bytes that are no
/// frame: its decoder gives those frames, then fails.
fn failing_clip(dir: &Path, name: &str, good: usize, (w, h): (usize, usize)) -> std::path::PathBuf {
    let whole = dir.join(format!("whole-{name}"));
    gst_launch(&format!(
        "videotestsrc num-buffers={good} pattern=ball ! video/x-raw,format=I420,width={w},height={h},framerate=25/1 \
         ! y4menc ! filesink location={}",
        whole.display()
    ));
    let mut data = std::fs::read(&whole).unwrap();
    let header = data.iter().position(|&b| b == b'\n').unwrap() + 1;
    // Each frame: "FRAME\n" and its I420 planes.
    assert_eq!(data.len(), header + good * (6 + w * h * 3 / 2), "one frame header each");
    data.extend(b"JUNK".repeat(2000));
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn an_input_that_fails_ends_its_stream_alone() {
    let dir = tmp("multi-failing");
    let (w, h) = (64, 32);
    let good = test_clip(&dir, "good.mkv", "smpte", 12, (w, h), 25);
    // Decodes 10 frames, then fails; and one that fails at once.
    let failing = failing_clip(&dir, "failing.y4m", 10, (w, h));
    let broken = dir.join("broken.mkv");
    std::fs::write(&broken, "not a video").unwrap();
    let inputs = [&good, &failing, &broken].map(|p| p.display().to_string());
    let grid = dir.join("grid.mkv");
    let outputs = dir.join("cam{}.mkv");
    let masks = dir.join("classes{}.mkv");
    let m = test_model("joint.onnx");
    let mut args = vec!["run"];
    args.extend(inputs.iter().map(String::as_str));
    args.extend([
        "-o",
        grid.to_str().unwrap(),
        "--tile",
        "64x32",
        "--outputs",
        outputs.to_str().unwrap(),
        "--mask-output",
        masks.to_str().unwrap(),
        "--model",
        &m,
        "--provider",
        "cpu",
        "--json",
        "-",
    ]);
    let o = run(&args);
    let err = stderr(&o);
    // A failed stream fails the run, as an error of one input does.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("2 of 3 inputs failed") && last.contains(&format!("input 1 ({})", inputs[1])),
        "{err}"
    );
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(report["failed"], serde_json::json!([1, 2]), "{report}");
    assert_eq!(report["ending"], "eos", "{report}");
    let streams = report["streams"].as_array().unwrap();

    // The good stream: all of it, in files that play to their end.
    assert_eq!(streams[0]["frames"], 12, "{report}");
    assert!(streams[0]["error"].is_null(), "{report}");
    assert_eq!(decode(&dir.join("cam0.mkv"), "RGB", w, h).len(), 12);
    assert_eq!(decode(&dir.join("classes0.mkv"), "GRAY8", w, h).len(), 12);
    assert!(
        err.contains(&format!("stream 0 {}: 12 frames, 0 dropped\n", inputs[0])),
        "{err}"
    );

    // The stream that failed midway: its error, and the frames it gave before, in
    // finalized files (those still on their way when it failed are lost).
    let error = streams[1]["error"].as_str().unwrap_or_else(|| panic!("{report}"));
    assert!(error.contains("YUV4MPEG"), "{report}");
    assert!(err.contains(&format!("failed: {error}")), "{err}");
    let frames = streams[1]["frames"].as_u64().unwrap() as usize;
    assert!(frames <= 10, "{report}");
    for file in ["cam1.mkv", "classes1.mkv"] {
        let file = dir.join(file);
        match frames {
            0 => assert!(!file.exists(), "{}: no frame, no file", file.display()),
            n => assert_eq!(decode(&file, "GRAY8", w, h).len(), n, "{} plays", file.display()),
        }
    }

    // The stream that failed at once: no frame, no file.
    assert_eq!(streams[2]["frames"], 0, "{report}");
    assert!(streams[2]["error"].is_string(), "{report}");
    assert!(!dir.join("cam2.mkv").exists() && !dir.join("classes2.mkv").exists());

    // The grid went on to the end of the good stream.
    assert_eq!(report["mosaic"]["frames"], 12, "{report}");
    assert_eq!(decode(&grid, "RGB", 128, 64).len(), 12);
}

#[test]
fn ctrl_c_finalizes_the_grid_and_every_stream_file() {
    let dir = tmp("multi-ctrlc");
    // Long enough that the run is still going when interrupted.
    let (w, h) = (96, 64);
    let long = test_clip(&dir, "long.mkv", "smpte", 3000, (w, h), 25);
    let short = test_clip(&dir, "short.mkv", "ball", 5, (w, h), 25);
    let grid = dir.join("grid.mp4");
    let outputs = dir.join("cam{}.mp4");
    let m = test_model("joint.onnx");
    let args = [
        "run",
        long.to_str().unwrap(),
        long.to_str().unwrap(),
        short.to_str().unwrap(),
        "-o",
        grid.to_str().unwrap(),
        "--tile",
        "96x64",
        "--outputs",
        outputs.to_str().unwrap(),
        "--model",
        &m,
        "--json",
        "-",
    ];
    let o = interrupt_app(&args, &grid, 10_000, Duration::ZERO, Duration::from_secs(60));
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("interrupted (outputs finalized)"), "{err}");
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(report["ending"], "interrupted", "{report}");
    // The short stream ended on its own before: all of it.
    assert_eq!(report["streams"][2]["frames"], 5, "{report}");
    for (i, s) in report["streams"].as_array().unwrap().iter().enumerate() {
        let frames = s["frames"].as_u64().unwrap() as usize;
        assert!(frames > 0 && frames < 3000, "stream {i}: {report}");
        let file = dir.join(format!("cam{i}.mp4"));
        assert_eq!(
            decode(&file, "RGB", w, h).len(),
            frames,
            "{} plays to its end",
            file.display()
        );
    }
    let longest = report["streams"][0]["frames"]
        .as_u64()
        .unwrap()
        .max(report["streams"][1]["frames"].as_u64().unwrap());
    assert_eq!(
        decode(&grid, "RGB", 2 * w, 2 * h).len() as u64,
        longest,
        "the grid plays to its end"
    );
}
