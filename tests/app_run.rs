//! End-to-end tests of `denoiseseg run`, `demo` and `models`: the built binary on
//! short clips made here with gst-launch-1.0. Needs `cargo build --release --workspace`
//! first (the binary loads the plugin from beside itself), as `make test` does.
#![cfg(feature = "cli")]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::{app, decode, fails_cleanly, gst_launch, run, signal_app, stderr, test_clip, test_model, tmp};

/// A lossless RGB clip (FFV1 in Matroska) of `n` frames.
fn make_clip(dir: &Path, n: usize, w: usize, h: usize) -> PathBuf {
    make_clip_at(dir, n, w, h, 25)
}

/// [`make_clip`] at `fps` frames per second.
fn make_clip_at(dir: &Path, n: usize, w: usize, h: usize, fps: u32) -> PathBuf {
    test_clip(dir, "clip.mkv", "smpte", n, (w, h), fps)
}

/// Runs the app and fails the test (killing the app) if it has not ended in `secs`.
fn run_within(secs: u64, args: &[&str]) -> Output {
    let mut child = app()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the app runs");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("{args:?} hung for {secs} s:\n{}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn run_writes_every_frame_and_lossless_class_maps_that_match_the_model() {
    let dir = tmp("masks");
    let (n, w, h) = (12, 64, 32);
    let clip = make_clip(&dir, n, w, h);
    let out = dir.join("out.mkv");
    let masks = dir.join("masks.mkv");
    let o = run(&[
        "run",
        clip.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mask-output",
        masks.to_str().unwrap(),
        "--model",
        &test_model("joint.onnx"),
        "--provider",
        "cpu",
        "--workers",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{n} frames")), "{}", stderr(&o));

    let input = decode(&clip, "RGB", w, h);
    let classes = decode(&masks, "GRAY8", w, h);
    assert_eq!(input.len(), n);
    assert_eq!(classes.len(), n, "one class map per frame");
    assert_eq!(decode(&out, "RGB", w, h).len(), n, "one output frame per input frame");
    // The joint test model labels each pixel with its strongest channel (first on ties).
    for (f, (rgb, cls)) in input.iter().zip(&classes).enumerate() {
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let mut best = 0;
            for c in 1..3 {
                if px[c] > px[best] {
                    best = c;
                }
            }
            assert_eq!(cls[i] as usize, best, "frame {f} pixel {i} {px:?}");
        }
    }
}

#[test]
fn run_png_mask_sequence_and_overlay_view() {
    let dir = tmp("png");
    let clip = make_clip(&dir, 5, 48, 24);
    // The pattern's folder must exist, as every output's.
    std::fs::create_dir(dir.join("m")).unwrap();
    let pattern = dir.join("m/%03d.png");
    let o = run(&[
        "run",
        clip.to_str().unwrap(),
        "--view",
        "overlay",
        "--mask-output",
        pattern.to_str().unwrap(),
        "--model",
        &test_model("joint.onnx"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pngs = std::fs::read_dir(dir.join("m")).unwrap().count();
    assert_eq!(pngs, 5);
}

#[test]
fn errors_are_one_clear_line_and_exit_code_1() {
    let dir = tmp("errors");
    let clip = make_clip(&dir, 2, 32, 16);
    let c = clip.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "/no/such/clip.mp4"], "no such file: /no/such/clip.mp4"),
        (&["run", c, "-o", "x.avi"], "give an .mp4 or .mkv file"),
        (&["run", c, "--batch-size", "500"], "batch-size = 500 is out of range"),
        (&["run", c, "--set", "nope=1"], "no property 'nope'"),
        (&["run", c, "--model", "/no/model.onnx"], "no model at /no/model.onnx"),
        (&["run", "/dev/video99"], "no camera at /dev/video99"),
        (&["run", c, "--size", "3x2"], "outside 8x8"),
        (&["run", dir.to_str().unwrap()], "is a folder: give a video file"),
    ];
    for (args, want) in cases {
        let o = run(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: expected '{want}' in:\n{err}");
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    }
    // A file that is no video: the error names the input.
    let notes = dir.join("notes.mp4");
    std::fs::write(&notes, "not a video").unwrap();
    let o = run(&["run", notes.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("input {}: ", notes.display())),
        "{}",
        stderr(&o)
    );
    // Views of the class map with a model that does not segment.
    for view in ["overlay", "mosaic"] {
        let o = run(&["run", c, "--view", view, "--model", &test_model("denoise_sigma.onnx")]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("--view {view}: the model")) && stderr(&o).contains("does not segment"),
            "{}",
            stderr(&o)
        );
    }
    // The screen without a display: an error, not a crash in a video sink.
    let o = app()
        .args(["run", c, "-o", "screen", "--model", &test_model("joint.onnx")])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("-o screen: no display"), "{}", stderr(&o));
    // A model that breaks the contract fails at start, with the reason.
    let o = run(&["run", c, "--model", &test_model("wrong_rank.onnx")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("rank"), "{}", stderr(&o));
    assert_eq!(
        stderr(&o).lines().filter(|l| l.contains("error")).count(),
        1,
        "{}",
        stderr(&o)
    );
}

#[test]
fn ctrl_c_finishes_the_output_file() {
    let dir = tmp("ctrlc");
    // Long enough that the run is still going when interrupted.
    let clip = make_clip(&dir, 3000, 96, 64);
    // SIGTERM (`timeout`, `kill`, systemd) and SIGHUP (a closed terminal) as Ctrl-C.
    for signal in ["INT", "TERM", "HUP"] {
        let out = dir.join(format!("out-{signal}.mp4"));
        // Interrupt once frames have gone through.
        let o = signal_run(
            signal,
            clip.to_str().unwrap(),
            &out,
            10_000,
            Duration::ZERO,
            Duration::from_secs(60),
        );
        let err = stderr(&o);
        assert!(o.status.success(), "SIG{signal}: {err}");
        assert!(err.contains("interrupted (outputs finalized)"), "SIG{signal}: {err}");
        let frames = decode(&out, "RGB", 96, 64).len();
        assert!(
            frames > 0 && frames < 3000,
            "SIG{signal}: the finalized MP4 plays {frames} frames"
        );
    }
}

#[test]
fn models_lists_the_shipped_model_and_flags_broken_ones() {
    let o = run(&["models", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    let small = models
        .iter()
        .find(|m| m["name"] == "denoiseseg-sdb-small")
        .expect("the shipped default is listed");
    assert_eq!(small["ok"], true);
    assert_eq!(small["classes"].as_array().unwrap().len(), 19);
    assert_eq!(small["inputs"]["sigma"], "sigma");

    let o = run(&["models", &test_model("corrupt.onnx")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("BROKEN"));
}

#[test]
fn demo_writes_a_playable_mosaic_and_gains_psnr() {
    let dir = tmp("demo");
    let out = dir.join("demo.mp4");
    let o = run(&["demo", "-o", out.to_str().unwrap(), "--panel", "256x128"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}\n{text}", stderr(&o));
    assert!(text.contains("frames     100 in"), "{text}");
    assert!(
        ["cpu", "cuda", "tensorrt"]
            .iter()
            .any(|p| text.contains(&format!("provider   {p}"))),
        "{text}"
    );
    // "PSNR       noisy A dB -> denoised B dB (+G dB)": the shipped model must gain.
    let line = text.lines().find(|l| l.starts_with("PSNR")).expect("a PSNR line");
    let gain: f64 = line
        .rsplit_once('(')
        .and_then(|(_, g)| g.trim_end_matches(" dB)").parse().ok())
        .unwrap_or_else(|| panic!("cannot read the gain in '{line}'"));
    assert!(gain > 3.0, "the shipped model gains only {gain} dB at sigma 25");
    // Three panels side by side, every frame.
    assert_eq!(decode(&out, "RGB", 768, 128).len(), 100);
}

/// A failed run that says `want` on its one line of stderr, and nothing from GStreamer
/// or GLib (CRITICAL or WARNING blocks) around it.
#[test]
fn option_combinations_and_start_failures_are_one_line_without_gstreamer_criticals() {
    let dir = tmp("combos");
    let clip = make_clip(&dir, 2, 32, 16);
    let c = clip.to_str().unwrap();
    let model = test_model("joint.onnx");
    let m = model.as_str();
    let out = dir.join("out.mp4");
    let o = out.to_str().unwrap();
    let preset = dir.join("bad.toml");
    std::fs::write(&preset, "[denoiseseg]\nbatch-size = 500\n").unwrap();
    let p = preset.to_str().unwrap();
    let in_flight = "max-in-flight 4 is less than batch-size 16";
    for (args, want) in [
        (
            &["run", c, "--model", m, "--batch-size", "16", "--max-in-flight", "4"][..],
            in_flight,
        ),
        (
            &[
                "run",
                c,
                "--model",
                m,
                "--set",
                "batch-size=16",
                "--set",
                "max-in-flight=4",
            ],
            in_flight,
        ),
        // Checked before the pipeline is printed, too.
        (
            &[
                "run",
                c,
                "--model",
                m,
                "--batch-size",
                "16",
                "--max-in-flight",
                "4",
                "--print-pipeline",
            ],
            in_flight,
        ),
        (
            &[
                "demo",
                "--model",
                m,
                "--batch-size",
                "16",
                "--max-in-flight",
                "4",
                "-o",
                o,
            ],
            in_flight,
        ),
        (
            &[
                "eval",
                c,
                "--model",
                m,
                "--sigma",
                "5",
                "--batch-size",
                "16",
                "--max-in-flight",
                "4",
            ],
            in_flight,
        ),
        (
            &[
                "bench",
                "--model",
                m,
                "--size",
                "32x16",
                "--batch-size",
                "16",
                "--max-in-flight",
                "4",
            ],
            in_flight,
        ),
        (
            &["run", c, "--model", m, "--config", p],
            "bad.toml: batch-size = 500 is out of range 1..=64",
        ),
        (
            &["run", c, "--model", m, "--set", "config=x.toml"],
            "give the config with --config",
        ),
        (
            &["run", c, "-o", o, "--model", m, "--size", "33x16"],
            "needs an even width and height",
        ),
        (
            &["demo", "-o", o, "--model", m, "--panel", "33x16"],
            "needs an even width and height",
        ),
        // The element refuses to start: the pipeline goes back to NULL before it is
        // dropped (GStreamer-CRITICAL blocks otherwise).
        (
            &[
                "run",
                c,
                "--model",
                m,
                "--ort-library",
                "/nonexistent/libonnxruntime.so.1",
            ],
            "cannot load ONNX Runtime",
        ),
    ] {
        fails_cleanly(args, want);
    }
    assert!(!out.exists(), "nothing was written");
    // Out-of-range encoder settings are refused by the option parser, not by GLib.
    let o = run(&["run", c, "-o", o, "--model", m, "--bitrate", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("0 is not in 1..=2048000"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("GLib"), "{}", stderr(&o));
}

#[test]
fn outputs_in_a_missing_folder_are_errors_and_no_folder_is_created() {
    let dir = tmp("missing");
    let clip = make_clip(&dir, 2, 32, 16);
    let c = clip.to_str().unwrap();
    let m = test_model("joint.onnx");
    let missing = dir.join("missing");
    let at = |name: &str| missing.join(name).display().to_string();
    let folder = format!("folder {} does not exist", missing.display());
    for (args, file) in [
        (vec!["run", c, "-o", &at("x.mp4")], at("x.mp4")),
        (vec!["run", c, "--mask-output", &at("m.mkv")], at("m.mkv")),
        (vec!["run", c, "--mask-output", &at("%05d.png")], at("%05d.png")),
        (vec!["demo", "-o", &at("x.mp4")], at("x.mp4")),
        (vec!["eval", c, "--sigma", "5", "--json", &at("r.json")], at("r.json")),
        (vec!["bench", "--size", "32x16", "--json", &at("r.json")], at("r.json")),
    ] {
        let mut args = args;
        args.extend(["--model", &m]);
        fails_cleanly(&args, &format!("cannot write {file}: {folder}"));
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}

#[test]
fn one_file_named_twice_is_an_error_before_anything_runs() {
    let dir = tmp("twice");
    let clip = make_clip(&dir, 2, 32, 16);
    let size = std::fs::metadata(&clip).unwrap().len();
    let m = test_model("joint.onnx");
    let run_in = |args: &[&str]| {
        app()
            .current_dir(&dir)
            .args(args)
            .args(["--model", &m])
            .output()
            .expect("the app runs")
    };
    // -o and --mask-output, also when written differently.
    let roundabout = format!("../{}/a.mkv", dir.file_name().unwrap().to_string_lossy());
    for (o, mask) in [
        ("a.mkv", "a.mkv"),
        ("a.mkv", "./a.mkv"),
        ("./a.mkv", roundabout.as_str()),
    ] {
        let out = run_in(&["run", "clip.mkv", "-o", o, "--mask-output", mask]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("-o {o} and --mask-output {mask} are the same file")),
            "{err}"
        );
        assert!(!dir.join("a.mkv").exists(), "nothing may run");
    }
    // An output over the input.
    let out = run_in(&["run", "clip.mkv", "-o", "./clip.mkv"]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "the input {} and -o ./clip.mkv are the same file",
            clip.canonicalize().unwrap().display()
        )),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&clip).unwrap().len(), size, "the input is untouched");
    // The JSON report over the input or an output.
    for (args, other) in [
        (&["run", "clip.mkv", "--json", "clip.mkv"][..], "the input"),
        (&["run", "clip.mkv", "-o", "a.mkv", "--json", "./a.mkv"][..], "-o a.mkv"),
    ] {
        let out = run_in(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(other) && err.contains("--json") && err.contains("are the same file"),
            "{err}"
        );
        assert!(!dir.join("a.mkv").exists(), "nothing may run");
    }
    assert_eq!(std::fs::metadata(&clip).unwrap().len(), size, "the input is untouched");
    // Other names of one file: a hard link of the input, a symbolic link (not yet
    // pointing at anything) to the other output.
    std::fs::hard_link(&clip, dir.join("hard.mkv")).unwrap();
    let out = run_in(&["run", "hard.mkv", "-o", "clip.mkv"]);
    assert!(stderr(&out).contains("are the same file"), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&clip).unwrap().len(), size, "the input is untouched");
    std::os::unix::fs::symlink("x.mkv", dir.join("link.mkv")).unwrap();
    let out = run_in(&["run", "clip.mkv", "-o", "link.mkv", "--mask-output", "x.mkv"]);
    assert!(
        stderr(&out).contains("-o link.mkv and --mask-output x.mkv are the same file"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.join("x.mkv").exists(), "nothing may run");
}

#[test]
fn odd_sizes_are_written_to_h264_padded_to_even_and_class_maps_keep_the_size() {
    let dir = tmp("odd-size");
    let clip = test_clip(&dir, "odd.mkv", "smpte", 3, (33, 17), 25);
    let (out, mask) = (dir.join("o.mp4"), dir.join("m.mkv"));
    let o = run(&[
        "run",
        clip.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--mask-output",
        mask.to_str().unwrap(),
        "--model",
        &test_model("joint.onnx"),
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("the video output is 34x18"), "{err}");
    assert_eq!(decode(&out, "RGB", 34, 18).len(), 3);
    assert_eq!(decode(&mask, "GRAY8", 33, 17).len(), 3);
}

#[test]
fn a_run_that_fails_before_its_first_frame_leaves_the_files_there_as_they_were() {
    let dir = tmp("keep-outputs");
    let clip = make_clip(&dir, 2, 32, 16);
    let joint = PathBuf::from(test_model("joint.onnx"));
    std::fs::write(dir.join("bad.onnx"), "not a model").unwrap();
    std::fs::copy(joint.with_extension("toml"), dir.join("bad.toml")).unwrap();
    let (out, mask) = (dir.join("out.mkv"), dir.join("mask.mkv"));
    for f in [&out, &mask] {
        std::fs::write(f, "yesterday's recording").unwrap();
    }
    let o = app()
        .current_dir(&dir)
        .args([
            "run",
            clip.to_str().unwrap(),
            "-o",
            "out.mkv",
            "--mask-output",
            "mask.mkv",
        ])
        .args(["--model", "bad.onnx"])
        .output()
        .expect("the app runs");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot load model"), "{err}");
    for f in [&out, &mask] {
        assert_eq!(
            std::fs::read_to_string(f).unwrap(),
            "yesterday's recording",
            "{}",
            f.display()
        );
    }
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The same run with the model: the outputs are replaced once frames come.
    let o = app()
        .current_dir(&dir)
        .args([
            "run",
            clip.to_str().unwrap(),
            "-o",
            "out.mkv",
            "--mask-output",
            "mask.mkv",
        ])
        .args(["--model", joint.to_str().unwrap()])
        .output()
        .expect("the app runs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(decode(&out, "RGB", 32, 16).len(), 2);
}

#[test]
fn pipelines_start_whatever_the_encoder_holds_before_its_first_frame() {
    // x264enc keeps tens of frames before its first output, while the other sinks
    // (demo's appsinks, run's class-map file) wait on their first frame: at 2 frames/s
    // a queue's 1 s limit is 2 frames, so any sink that waited for the encoder hung
    // the pipeline at preroll (as demo did on the 10 frames/s 768x576 street camera).
    let dir = tmp("preroll");
    let (n, w, h) = (30, 64, 32);
    let clip = make_clip_at(&dir, n, w, h, 2);
    let c = clip.to_str().unwrap();
    let m = test_model("joint.onnx");
    let demo = dir.join("demo.mp4");
    let o = run_within(
        60,
        &[
            "demo",
            "--input",
            c,
            "-o",
            demo.to_str().unwrap(),
            "--panel",
            "64x32",
            "--model",
            &m,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(decode(&demo, "RGB", 3 * w, h).len(), n);

    for view in ["denoised", "mosaic"] {
        let out = dir.join(format!("{view}.mp4"));
        let masks = dir.join(format!("{view}-masks.mkv"));
        let o = run_within(
            60,
            &[
                "run",
                c,
                "-o",
                out.to_str().unwrap(),
                "--mask-output",
                masks.to_str().unwrap(),
                "--view",
                view,
                "--size",
                "64x32",
                "--model",
                &m,
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let out_w = if view == "mosaic" { 3 * w } else { w };
        assert_eq!(decode(&out, "RGB", out_w, h).len(), n, "{view}");
        assert_eq!(decode(&masks, "GRAY8", w, h).len(), n, "{view}");
    }
}

#[test]
fn mosaic_batches_fill_without_waiting_out_their_timeout() {
    // The compositor takes input frame N only with denoised frame N: an input-panel
    // queue shorter than what the element holds stopped the tee before a batch of 8
    // could fill, so every batch waited out its timeout (10 s here; 60 s in all).
    let dir = tmp("mosaic-batch");
    let clip = make_clip(&dir, 48, 64, 32);
    let o = run_within(
        20,
        &[
            "run",
            clip.to_str().unwrap(),
            "--view",
            "mosaic",
            "--size",
            "64x32",
            "--batch-size",
            "8",
            "--batch-timeout",
            "10000",
            "--model",
            &test_model("joint.onnx"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("48 frames"), "{}", stderr(&o));
}

/// An HTTP server on a free port that answers every request with the first `head`
/// bytes of `data` and then nothing, keeping the connection open.
fn stalling_http_server(data: Vec<u8>, head: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for mut s in listener.incoming().flatten() {
            let _ = s.read(&mut [0u8; 4096]);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\n\r\n",
                data.len()
            );
            let _ = s.write_all(&data[..head]);
            open.push(s);
        }
    });
    port
}

/// Starts `denoiseseg run INPUT -o out` on the joint test model, waits (at most
/// `within`) until `out` exists and holds at least `min_bytes`, then `settle` more,
/// interrupts it once (SIGINT) and returns what it printed.
fn interrupt_run(input: &str, out: &Path, min_bytes: u64, settle: Duration, within: Duration) -> Output {
    signal_run("INT", input, out, min_bytes, settle, within)
}

/// [`interrupt_run`] with another signal (`kill -SIGNAL`).
fn signal_run(signal: &str, input: &str, out: &Path, min_bytes: u64, settle: Duration, within: Duration) -> Output {
    let model = test_model("joint.onnx");
    let args = ["run", input, "-o", out.to_str().unwrap(), "--model", &model];
    signal_app(signal, &args, out, min_bytes, settle, within)
}

#[test]
fn ctrl_c_before_the_first_frame_says_so_and_leaves_no_file() {
    let dir = tmp("ctrlc-early");
    // An MP4 whose header (moov first) arrives, then no frame: the pipeline is built
    // and linked, EOS would go through the muxer with nothing ("outputs finalized" for
    // a header-only file was printed).
    let mp4 = dir.join("faststart.mp4");
    gst_launch(&format!(
        "videotestsrc num-buffers=10 ! video/x-raw,width=64,height=32,framerate=25/1 ! x264enc \
         ! h264parse ! mp4mux faststart=true ! filesink location={}",
        mp4.display()
    ));
    let data = std::fs::read(&mp4).unwrap();
    let mut mdat = 0;
    while &data[mdat + 4..mdat + 8] != b"mdat" {
        mdat += u32::from_be_bytes(data[mdat..mdat + 4].try_into().unwrap()) as usize;
    }
    let port = stalling_http_server(data, mdat + 8);
    // A live source that sends nothing at all (its typefind failed on EOS).
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (i, input) in [
        format!("http://127.0.0.1:{port}/clip.mp4"),
        format!("udp://127.0.0.1:{udp}"),
    ]
    .iter()
    .enumerate()
    {
        let out = dir.join(format!("out{i}.mp4"));
        let o = interrupt_run(input, &out, 0, Duration::from_secs(1), Duration::from_secs(30));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(130), "{input}: {err}");
        assert!(
            err.contains("stopped before the first frame: no output written"),
            "{input}: {err}"
        );
        assert!(!err.contains("finalized") && !err.contains("error"), "{input}: {err}");
        assert!(!out.exists(), "{input}: the file without frames is removed");
    }
}

#[test]
fn live_inputs_run_leaky_with_rtsp_options_unless_told_otherwise() {
    let dir = tmp("live-pipeline");
    let clip = make_clip(&dir, 2, 32, 16);
    let c = clip.to_str().unwrap();
    let m = test_model("joint.onnx");
    let pipeline = |args: &[&str]| {
        let o = app()
            .args(args)
            .args(["--model", &m, "--print-pipeline"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stderr(&o)
    };
    let rtsp = "rtsp://camera/stream";
    let p = pipeline(&["run", rtsp]);
    assert!(
        p.contains(r#"rtspsrc name=src location="rtsp://camera/stream" latency=200 drop-on-latency=true"#),
        "{p}"
    );
    assert!(p.contains("denoiseseg name=d leaky=true"), "{p}");
    assert!(p.contains("fakesink sync=false"), "{p}");
    assert!(!p.contains("protocols="), "auto leaves rtspsrc's choice: {p}");
    let p = pipeline(&["run", rtsp, "--rtsp-latency", "50", "--rtsp-transport", "tcp"]);
    assert!(p.contains("latency=50 protocols=tcp "), "{p}");
    let p = pipeline(&["run", rtsp, "--rtsp-transport", "udp"]);
    assert!(p.contains("protocols=udp+udp-mcast "), "{p}");
    // Opting out: the options, or a preset that says leaky = false.
    let preset = common::root().join("configs/gpu-throughput.toml");
    for opt_out in [
        &["--no-leaky"][..],
        &["--leaky=false"],
        &["--config", preset.to_str().unwrap()],
    ] {
        let p = pipeline(&[&["run", rtsp][..], opt_out].concat());
        assert!(!p.contains("leaky=true"), "{opt_out:?}: {p}");
        assert!(p.contains("drop-on-latency=false"), "{opt_out:?}: {p}");
    }
    // Other live streams too; the mosaic's input panel leaks instead of stopping them.
    let p = pipeline(&["run", "udp://127.0.0.1:5000", "--view", "mosaic"]);
    assert!(p.contains("denoiseseg name=d leaky=true"), "{p}");
    assert!(p.contains("max-size-time=0 leaky=downstream"), "{p}");
    // Files are not live: every frame, unless asked.
    assert!(!pipeline(&["run", c]).contains("leaky"));
    assert!(pipeline(&["run", c, "--leaky"]).contains("denoiseseg name=d leaky=true"));
    // A bare --leaky before the input takes no value: the input stays the input.
    assert!(pipeline(&["run", "--leaky", c]).contains("denoiseseg name=d leaky=true"));
    fails_cleanly(
        &["run", c, "--rtsp-latency", "100", "--model", &m],
        "--rtsp-latency applies to rtsp:// inputs only",
    );
    // The RTSP pipeline runs: a camera that is not there is one line with the reason.
    let o = run(&[
        "run",
        "rtsp://127.0.0.1:1/none",
        "--model",
        &m,
        "--rtsp-transport",
        "tcp",
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.lines().last().unwrap().contains("input rtsp://127.0.0.1:1/none: ")
            && err.lines().last().unwrap().contains("Failed to connect"),
        "{err}"
    );
    let help = String::from_utf8(run(&["run", "--help"]).stdout).unwrap();
    for want in [
        "--rtsp-latency <MS>",
        "--rtsp-transport <TRANSPORT>",
        "--no-leaky",
        "Live inputs",
    ] {
        assert!(help.contains(want), "{want} is not in:\n{help}");
    }
    // A preset's leaky = true (for cameras) leaves a file's frames alone, and says so;
    // --leaky asks for it.
    let preset = dir.join("live.toml");
    std::fs::write(&preset, "[denoiseseg]\nleaky = true\n").unwrap();
    let o = app()
        .args([
            "run",
            c,
            "--model",
            &m,
            "--config",
            preset.to_str().unwrap(),
            "--print-pipeline",
        ])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(
        err.contains("note: the preset's leaky = true is for live inputs"),
        "{err}"
    );
    assert!(
        err.contains("denoiseseg name=d") && !err.contains("leaky=true"),
        "{err}"
    );
    let p = pipeline(&["run", c, "--config", preset.to_str().unwrap(), "--leaky"]);
    assert!(
        p.contains("denoiseseg name=d leaky=true") && !p.contains("note:"),
        "{p}"
    );
}

#[test]
fn a_live_stream_runs_leaky_says_so_and_ctrl_c_finalizes_it() {
    let dir = tmp("live-udp");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A live camera stand-in: H.264 in MPEG-TS over UDP, in real time; noise, so that
    // the output fills filesink's 64 kB buffer within a few frames.
    let mut sender = Command::new("gst-launch-1.0")
        .args(
            format!(
                "-q videotestsrc is-live=true pattern=snow ! video/x-raw,width=160,height=96,framerate=25/1 \
                 ! x264enc tune=zerolatency key-int-max=5 ! mpegtsmux ! udpsink host=127.0.0.1 port={port}"
            )
            .split_whitespace(),
        )
        .spawn()
        .unwrap();
    let out = dir.join("rec.mkv");
    let live = format!("udp://127.0.0.1:{port}");
    let o = interrupt_run(&live, &out, 4000, Duration::ZERO, Duration::from_secs(30));
    let _ = sender.kill();
    let _ = sender.wait();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("live input: frames are dropped when the model cannot keep up (--no-leaky to queue them instead)"),
        "{err}"
    );
    assert!(err.contains("interrupted (outputs finalized)"), "{err}");
    assert!(!decode(&out, "RGB", 160, 96).is_empty());
}

/// A lossless clip of `n` frames of one colour (RGB).
fn make_solid_clip(dir: &Path, n: usize, w: usize, h: usize, [r, g, b]: [u8; 3]) -> PathBuf {
    let path = dir.join("solid.mkv");
    let argb = 0xff00_0000u32 | (r as u32) << 16 | (g as u32) << 8 | b as u32;
    gst_launch(&format!(
        "videotestsrc num-buffers={n} pattern=solid-color foreground-color={argb} \
         ! video/x-raw,format=RGB,width={w},height={h},framerate=25/1 \
         ! videoconvert ! video/x-raw,format=BGRx ! avenc_ffv1 ! matroskamux ! filesink location={}",
        path.display()
    ));
    path
}

/// The class maps of a PNG sequence in `dir`, in name order.
fn png_masks(dir: &Path, w: usize, h: usize) -> Vec<Vec<u8>> {
    let mut pngs: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    pngs.sort();
    pngs.iter().flat_map(|p| decode(p, "GRAY8", w, h)).collect()
}

#[test]
fn seg_model_segments_the_denoised_frames() {
    let dir = tmp("chain");
    let (n, w, h) = (4, 64, 32);
    // Every channel below 0.5: seg_logits alone labels it grey (3). denoise_sigma adds
    // sigma = 25/255: red becomes 145/255 > 0.5, the strongest channel: red (0).
    let clip = make_solid_clip(&dir, n, w, h, [120, 110, 100]);
    let c = clip.to_str().unwrap();
    let (den, seg) = (test_model("denoise_sigma.onnx"), test_model("seg_logits.onnx"));
    for (name, chain) in [("alone", false), ("chained", true)] {
        std::fs::create_dir(dir.join(name)).unwrap();
        let pattern = dir.join(name).join("%03d.png");
        let mut args = vec![
            "run",
            c,
            "--mask-output",
            pattern.to_str().unwrap(),
            "--provider",
            "cpu",
        ];
        if chain {
            args.extend(["--model", &den, "--noise-level", "25", "--seg-model", &seg]);
        } else {
            args.extend(["--model", &seg]);
        }
        let o = run(&args);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let masks = png_masks(&dir.join(name), w, h);
        assert_eq!(masks.len(), n, "{name}: one class map per frame");
        let want = if chain { 0 } else { 3 };
        for (f, m) in masks.iter().enumerate() {
            assert!(m.iter().all(|&v| v == want), "{name}: frame {f} has {:?}", &m[..8]);
        }
        if chain {
            assert!(
                stderr(&o).contains("model test-denoise-sigma + test-seg-logits"),
                "{}",
                stderr(&o)
            );
        }
    }
    // The mosaic and overlay views run the chain too, with the segmenter's legend.
    let out = dir.join("mosaic.mkv");
    let o = run(&[
        "run",
        c,
        "--model",
        &den,
        "--seg-model",
        &seg,
        "--view",
        "mosaic",
        "--size",
        "64x32",
        "-o",
        out.to_str().unwrap(),
        "--print-pipeline",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let desc = stderr(&o);
    assert!(
        desc.contains("denoiseseg name=denoiser output=denoised ! queue"),
        "{desc}"
    );
    assert!(desc.contains("> grey"), "the segmenter's classes in the legend: {desc}");
}

#[test]
fn seg_model_errors_are_one_line() {
    let dir = tmp("chain-errors");
    let clip = make_clip(&dir, 2, 32, 16);
    let c = clip.to_str().unwrap();
    let (den, seg) = (test_model("denoise_sigma.onnx"), test_model("seg_logits.onnx"));
    fails_cleanly(
        &["run", c, "--model", &den, "--seg-model", &den],
        "denoise_sigma.onnx: the model does not segment",
    );
    fails_cleanly(&["run", c, "--model", &seg, "--seg-model", &seg], "the first model");
    fails_cleanly(
        &["run", c, "--model", &den, "--seg-model", "missing.onnx"],
        "--seg-model: no model at missing.onnx",
    );
}

#[test]
fn models_suggests_a_sidecar_for_a_model_without_one_and_writes_it_once() {
    let dir = tmp("suggest");
    let model = dir.join("seg.onnx");
    std::fs::copy(test_model("seg_logits.onnx"), &model).unwrap();
    let m = model.to_str().unwrap();
    let o = run(&["models", m, "--json"]);
    assert_eq!(o.status.code(), Some(1), "no sidecar breaks the contract");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mine = v["models"].as_array().unwrap().iter().find(|x| x["path"] == m).unwrap();
    assert_eq!(mine["ok"], false);
    assert_eq!(mine["graph"]["outputs"][0]["name"], "logits");
    assert_eq!(
        mine["graph"]["outputs"][0]["shape"],
        serde_json::json!([null, 4, null, null])
    );
    let s = &mine["suggestion"];
    assert_eq!(s["passes_check"], true, "{s}");
    assert_eq!(
        (s["image"].as_str(), s["logits"].as_str()),
        (Some("image"), Some("logits"))
    );
    assert!(s["sidecar"].as_str().unwrap().contains("name = \"class3\""), "{s}");
    assert!(
        !dir.join("seg.toml").exists(),
        "nothing written without --write-sidecar"
    );

    let o = run(&["models", m, "--write-sidecar"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("written from the suggestion"), "{text}");
    assert!(text.contains("padded to a multiple of 32"), "{text}");
    let written = std::fs::read_to_string(dir.join("seg.toml")).unwrap();
    assert!(written.contains("mean = [0.485, 0.456, 0.406]"), "{written}");
    let o = run(&["models", m, "--write-sidecar"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("never overwritten"));
    assert_eq!(std::fs::read_to_string(dir.join("seg.toml")).unwrap(), written);

    // The shipped segmenter says plainly what it was trained on.
    let o = run(&["models"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("trained on synthetic scenes"), "{text}");
    assert!(text.contains("--seg-model"), "{text}");
    // With the real-street figures of its sidecar (from models/eval-real): every shipped
    // segmenter has them, each its own.
    for sidecar in [
        "models/denoiseseg-sdb-small.toml",
        "models/denoiseseg-sdb-quality.toml",
        "models/denoiseseg-sdb-camera.toml",
    ] {
        let acc = metric(sidecar, "real_streets_pixel_accuracy_sigma0");
        let miou = metric(sidecar, "real_streets_miou_sigma0");
        let said = format!(
            "it gets {:.0} % of the labelled pixels right, mIoU {miou:.2}",
            acc * 100.0
        );
        assert!(text.contains(&said), "{sidecar}: {said:?} not in {text}");
    }
    assert_eq!(text.matches("trained on synthetic scenes").count(), 3, "{text}");
}

/// A number from the `[metrics]` of a shipped sidecar.
fn metric(sidecar: &str, key: &str) -> f64 {
    let text = std::fs::read_to_string(common::root().join(sidecar)).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{sidecar} has no {key}"));
    line.split(" = ").nth(1).unwrap().trim().parse().unwrap()
}

/// A lossless GRAY8 label clip of `n` frames with every pixel `class`.
fn make_label_clip(dir: &Path, n: usize, w: usize, h: usize, class: u8) -> PathBuf {
    let raw = dir.join(format!("class{class}.raw"));
    std::fs::write(&raw, vec![class; n * w * h]).unwrap();
    let labels = dir.join(format!("class{class}.mkv"));
    gst_launch(&format!(
        "filesrc location={} blocksize={} ! rawvideoparse format=gray8 width={w} height={h} framerate=25/1 \
         ! avenc_ffv1 ! matroskamux ! filesink location={}",
        raw.display(),
        w * h,
        labels.display()
    ));
    labels
}

#[test]
fn eval_seg_model_scores_the_segmenter_on_the_denoised_frames() {
    let dir = tmp("eval-chain");
    let (n, w, h) = (3, 64, 32);
    let clip = make_solid_clip(&dir, n, w, h, [120, 110, 100]);
    // Labels: class 0 (red) everywhere, which only the chain gives (see above).
    let labels = make_label_clip(&dir, n, w, h, 0);
    let (den, seg) = (test_model("denoise_sigma.onnx"), test_model("seg_logits.onnx"));
    let c = clip.to_str().unwrap();
    let l = labels.to_str().unwrap();
    let common = ["--labels", l, "--sigma", "0", "--provider", "cpu", "--json", "-"];
    for (args, miou) in [
        (
            vec!["eval", c, "--model", &den, "--noise-level", "25", "--seg-model", &seg],
            1.0,
        ),
        (vec!["eval", c, "--model", &seg], 0.0),
    ] {
        let o = run(&[&args[..], &common[..]].concat());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["results"][0]["miou"].as_f64(), Some(miou), "{args:?}: {v}");
    }
}

/// With a joint first model, its class map must not be the one scored: the second
/// element's replaces it on the buffer (eval, the mosaic and segoverlay read the meta;
/// the mask pad is the second element's own).
#[test]
fn eval_seg_model_after_a_joint_model_scores_the_segmenter() {
    let dir = tmp("eval-chain-joint");
    let (n, w, h) = (3, 64, 32);
    // joint.onnx: denoised = 1 - image = (135, 145, 155), its own labels red (0);
    // seg_logits on that: blue (2) is the strongest channel above 0.5.
    let clip = make_solid_clip(&dir, n, w, h, [120, 110, 100]);
    let labels = make_label_clip(&dir, n, w, h, 2);
    let (joint, seg) = (test_model("joint.onnx"), test_model("seg_logits.onnx"));
    let o = run(&[
        "eval",
        clip.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--model",
        &joint,
        "--seg-model",
        &seg,
        "--sigma",
        "0",
        "--provider",
        "cpu",
        "--json",
        "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["results"][0]["miou"].as_f64(), Some(1.0), "{v}");
}
