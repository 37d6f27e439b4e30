//! End-to-end tests of `denoiseseg eval` and `denoiseseg bench`: the built binary on
//! short clips that gst-launch-1.0 makes here, with tests/models/joint.onnx
//! (denoised = 1 - image, labels = argmax over R, G, B), so that every number in the
//! JSON report can be computed independently.
//!
//! The binary loads the plugin from beside itself: run `cargo build --release
//! --workspace` first (the Makefile does), then `cargo test --release`.
#![cfg(feature = "cli")]

use std::path::Path;
use std::process::{Command, Output};

use denoiseseg::metrics::ssim_rgb_u8;
use denoiseseg::noise::{add_noise_interleaved, NoiseParams};
use serde_json::Value;

mod common;
use common::{app, gst_launch};

fn joint_model() -> String {
    common::test_model("joint.onnx")
}

fn run(mut c: Command) -> Output {
    let out = c.output().expect("the app runs");
    eprintln!(
        "{:?}\n--- stdout\n{}--- stderr\n{}",
        c,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Reads frames of `bpp` bytes per pixel written with GStreamer's default stride
/// (rows padded to 4 bytes) and returns them tightly packed.
fn read_frames(path: &Path, w: usize, h: usize, bpp: usize) -> Vec<Vec<u8>> {
    let raw = std::fs::read(path).unwrap();
    let stride = (w * bpp).div_ceil(4) * 4;
    let size = stride * h;
    assert_eq!(raw.len() % size, 0, "{} is not whole frames", path.display());
    raw.chunks(size)
        .map(|f| f.chunks(stride).flat_map(|r| &r[..w * bpp]).copied().collect())
        .collect()
}

/// Writes packed frames with GStreamer's default stride.
fn write_frames(path: &Path, frames: &[Vec<u8>], w: usize, bpp: usize) {
    let stride = (w * bpp).div_ceil(4) * 4;
    let mut raw = Vec::new();
    for f in frames {
        for row in f.chunks(w * bpp) {
            raw.extend_from_slice(row);
            raw.resize(raw.len() + stride - w * bpp, 0);
        }
    }
    std::fs::write(path, raw).unwrap();
}

/// A clean clip from videotestsrc: `n` RGB frames, returned packed, and written as
/// `out` (FFV1 in MKV through BGRx, lossless, or one PNG per frame when `out` ends
/// in .png, with %d in the name).
fn clean_clip(dir: &Path, out: &Path, w: usize, h: usize, n: usize, pattern: &str) -> Vec<Vec<u8>> {
    let raw = dir.join(format!("clean-{w}x{h}-{pattern}.rgb"));
    let encode = if out.extension().is_some_and(|e| e == "png") {
        format!("pngenc ! multifilesink location={}", out.display())
    } else {
        format!(
            "videoconvert ! video/x-raw,format=BGRx ! avenc_ffv1 ! matroskamux ! filesink location={}",
            out.display()
        )
    };
    gst_launch(&format!(
        "videotestsrc num-buffers={n} pattern={pattern} horizontal-speed=3 ! \
         video/x-raw,format=RGB,width={w},height={h},framerate=25/1 ! tee name=t \
         t. ! queue ! filesink location={} t. ! queue ! {encode}",
        raw.display()
    ));
    let frames = read_frames(&raw, w, h, 3);
    assert_eq!(frames.len(), n);
    frames
}

/// Label maps as GRAY8, written as FFV1 in MKV or as PNG files (%d in the name).
fn write_labels(dir: &Path, out: &Path, labels: &[Vec<u8>], w: usize, h: usize) {
    let raw = dir.join(format!("labels-{w}x{h}.gray"));
    write_frames(&raw, labels, w, 1);
    let encode = if out.extension().is_some_and(|e| e == "png") {
        format!("pngenc ! multifilesink location={}", out.display())
    } else {
        format!("avenc_ffv1 ! matroskamux ! filesink location={}", out.display())
    };
    gst_launch(&format!(
        "filesrc location={} ! rawvideoparse format=gray8 width={w} height={h} framerate=25/1 ! {encode}",
        raw.display()
    ));
}

/// The joint model's class rule: the strongest of R, G, B, the first on ties.
fn argmax(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks(3)
        .map(|p| {
            let mut best = 0;
            for c in 1..3 {
                if p[c] > p[best] {
                    best = c;
                }
            }
            best as u8
        })
        .collect()
}

/// Ground truth for a clean frame: its argmax, with the first row ignored (255).
fn truth_of(clean: &[u8], w: usize) -> Vec<u8> {
    let mut t = argmax(clean);
    t[..w].fill(255);
    t
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let sse: f64 = a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum();
    let mse = sse / a.len() as f64;
    if mse == 0.0 {
        100.0
    } else {
        (10.0 * (255.0f64 * 255.0 / mse).log10()).min(100.0)
    }
}

/// What eval should report for one sigma, computed here.
struct Expected {
    psnr_noisy: f64,
    psnr_denoised: f64,
    ssim_noisy: f64,
    ssim_denoised: f64,
    miou: f64,
    pixel_accuracy: f64,
}

fn expected(clean: &[Vec<u8>], sizes: &[(usize, usize)], truth: &[Vec<u8>], sigma: f32, seed: u64) -> Expected {
    let n = clean.len() as f64;
    let (mut pn, mut pd, mut sn, mut sd) = (0.0, 0.0, 0.0, 0.0);
    let mut cm = [[0u64; 3]; 3];
    for (k, (c, &(w, h))) in clean.iter().zip(sizes).enumerate() {
        let mut noisy = c.clone();
        add_noise_interleaved(
            &mut noisy,
            w,
            h,
            w * 3,
            3,
            &[0, 1, 2],
            &NoiseParams::gaussian(sigma),
            seed,
            k as u64,
        );
        let denoised: Vec<u8> = noisy.iter().map(|&v| 255 - v).collect();
        pn += psnr(&noisy, c);
        pd += psnr(&denoised, c);
        sn += ssim_rgb_u8(&noisy, c, w, h);
        sd += ssim_rgb_u8(&denoised, c, w, h);
        for (&p, &t) in argmax(&noisy).iter().zip(&truth[k]) {
            if t != 255 {
                cm[t as usize][p as usize] += 1;
            }
        }
    }
    let mut ious = Vec::new();
    for (c, row) in cm.iter().enumerate() {
        let tp = row[c];
        let row: u64 = row.iter().sum();
        let col: u64 = (0..3).map(|t| cm[t][c]).sum();
        if row + col > 0 {
            ious.push(tp as f64 / (row + col - tp) as f64);
        }
    }
    let total: u64 = cm.iter().flatten().sum();
    Expected {
        psnr_noisy: pn / n,
        psnr_denoised: pd / n,
        ssim_noisy: sn / n,
        ssim_denoised: sd / n,
        miou: ious.iter().sum::<f64>() / ious.len() as f64,
        pixel_accuracy: (0..3).map(|c| cm[c][c]).sum::<u64>() as f64 / total as f64,
    }
}

fn close(got: &Value, want: f64, what: &str) {
    let got = got.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {got}"));
    assert!((got - want).abs() < 1e-6, "{what}: got {got}, expected {want}");
}

fn check(r: &Value, e: &Expected, frames: usize) {
    assert_eq!(r["frames"], frames, "{r}");
    close(&r["psnr_noisy"], e.psnr_noisy, "psnr_noisy");
    close(&r["psnr_denoised"], e.psnr_denoised, "psnr_denoised");
    close(&r["ssim_noisy"], e.ssim_noisy, "ssim_noisy");
    close(&r["ssim_denoised"], e.ssim_denoised, "ssim_denoised");
    close(&r["miou"], e.miou, "miou");
    close(&r["pixel_accuracy"], e.pixel_accuracy, "pixel_accuracy");
    assert!(r["fps"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["complete"], true);
}

#[test]
fn eval_on_a_video_with_label_video_matches_independent_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h, n) = (64, 32, 8);
    let clip = dir.path().join("clean.mkv");
    let clean = clean_clip(dir.path(), &clip, w, h, n, "smpte");
    let truth: Vec<Vec<u8>> = clean.iter().map(|c| truth_of(c, w)).collect();
    let labels = dir.path().join("labels.mkv");
    write_labels(dir.path(), &labels, &truth, w, h);
    let json = dir.path().join("eval.json");

    let mut c = app();
    c.arg("eval")
        .arg(&clip)
        .arg("--labels")
        .arg(&labels)
        .args(["--sigma", "15,40", "--seed", "7", "--provider", "cpu", "--model"])
        .arg(joint_model())
        .arg("--json")
        .arg(&json);
    let out = run(c);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("PSNR noisy"), "the table is printed: {stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["provider"], "cpu");
    assert_eq!(report["model_name"], "test-joint");
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let sizes = vec![(w, h); n];
    for (r, sigma) in results.iter().zip([15.0, 40.0]) {
        assert_eq!(r["sigma"], sigma);
        check(r, &expected(&clean, &sizes, &truth, sigma as f32, 7), n);
        assert!(r["iou_per_class"]["red"].is_number(), "{r}");
    }
    // The inverted image is far from the clean one.
    assert!(results[0]["psnr_denoised"].as_f64().unwrap() < results[0]["psnr_noisy"].as_f64().unwrap());
}

#[test]
fn eval_on_an_image_folder_of_mixed_sizes_with_json_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    let gt = dir.path().join("gt");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&gt).unwrap();
    // Sorted names give the order; 42x26 has padded rows and a padded model input.
    let specs = [("a", 64, 32, "smpte"), ("b", 42, 26, "ball"), ("c", 48, 16, "colors")];
    let (mut clean, mut sizes, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for (name, w, h, pattern) in specs {
        let frames = clean_clip(
            dir.path(),
            &images.join(format!("{name}_leftImg8bit.png")),
            w,
            h,
            1,
            pattern,
        );
        let t = truth_of(&frames[0], w);
        write_labels(
            dir.path(),
            &gt.join(format!("{name}_gtFine_labelTrainIds.png")),
            std::slice::from_ref(&t),
            w,
            h,
        );
        clean.push(frames[0].clone());
        sizes.push((w, h));
        truth.push(t);
    }
    let mut c = app();
    c.arg("eval")
        .arg(&images)
        .arg("--labels")
        .arg(&gt)
        .args(["--sigma", "25", "--seed", "3", "--provider", "cpu", "--model"])
        .arg(joint_model())
        .args(["--json", "-"]);
    let out = run(c);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report alone");
    let r = &report["results"][0];
    check(r, &expected(&clean, &sizes, &truth, 25.0, 3), 3);

    // --frames takes the first images only.
    let mut c = app();
    c.arg("eval")
        .arg(&images)
        .args(["--sigma", "25", "--seed", "3", "--frames", "2", "--model"])
        .arg(joint_model())
        .args(["--json", "-"]);
    let out = run(c);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &report["results"][0];
    assert_eq!(r["frames"], 2);
    assert!(r["miou"].is_null(), "no labels, no mIoU: {r}");
    let e = expected(&clean[..2], &sizes[..2], &truth[..2], 25.0, 3);
    close(&r["psnr_noisy"], e.psnr_noisy, "psnr_noisy");
}

/// `eval` on `clip` with denoise_sigma.onnx fed sigma 0 (its output is its input), the
/// given noise options; the JSON report.
fn eval_identity(dir: &Path, clip: &Path, opts: &[&str]) -> Value {
    let json = dir.join("codec.json");
    let mut c = app();
    c.arg("eval")
        .arg(clip)
        .args([
            "--sigma",
            "20",
            "--seed",
            "3",
            "--noise-level",
            "0",
            "--provider",
            "cpu",
            "--model",
        ])
        .arg(common::test_model("denoise_sigma.onnx"))
        .args(opts)
        .arg("--json")
        .arg(&json);
    let out = run(c);
    assert!(out.status.success());
    // Cutting the clip at --frames must not upset GStreamer (it once unrefed a NULL item).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("CRITICAL") && !stderr.contains("WARNING"), "{stderr}");
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

#[test]
fn eval_compresses_camera_noise_before_the_model_and_feeds_the_given_noise_level() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h, n) = (64, 48, 6);
    let clip = dir.path().join("clean.mkv");
    let clean = clean_clip(dir.path(), &clip, w, h, n, "smpte");
    let sizes = vec![(w, h); n];
    let truth: Vec<Vec<u8>> = clean.iter().map(|c| truth_of(c, w)).collect();

    // Gaussian noise, no codec: the noisy frames are exactly the addnoise ones.
    let plain = eval_identity(dir.path(), &clip, &[]);
    let r = &plain["results"][0];
    close(
        &r["psnr_noisy"],
        expected(&clean, &sizes, &truth, 20.0, 3).psnr_noisy,
        "psnr_noisy",
    );
    assert_eq!(
        (&plain["noise"], &plain["codec"]),
        (&Value::from("gaussian"), &Value::from("none"))
    );

    for (opts, codec) in [
        (
            &[
                "--noise",
                "camera",
                "--correlation",
                "0.7",
                "--codec",
                "jpeg",
                "--quality",
                "30",
            ][..],
            "jpeg",
        ),
        (&["--noise", "camera", "--codec", "h264", "--crf", "35"][..], "h264"),
    ] {
        let report = eval_identity(dir.path(), &clip, opts);
        let r = &report["results"][0];
        assert_eq!(
            (&report["noise"], &report["codec"]),
            (&Value::from("camera"), &Value::from(codec))
        );
        // Every frame is paired with its clean frame, through the codec's latency and
        // x264's shifted timestamps.
        assert_eq!(r["frames"], n, "{report}");
        // The model saw the decoded frames (fed 0: its output is its input) ...
        assert_eq!(r["noise_level_used"], 0.0);
        let (noisy, out) = (r["psnr_noisy"].as_f64().unwrap(), r["psnr_denoised"].as_f64().unwrap());
        assert!((noisy - out).abs() < 1e-9, "{r}");
        // ... which are not the uncompressed noisy ones.
        let uncompressed = plain["results"][0]["psnr_noisy"].as_f64().unwrap();
        assert!(
            (noisy - uncompressed).abs() > 0.2,
            "{codec}: {noisy} against {uncompressed}"
        );
    }
}

/// x264 gets exactly the first --frames frames, encoded the same way on every run: the
/// noisy input's PSNR after H.264 is the same number run after run (with x264's
/// mb-tree on, with the model running beside it, it took one of three values here).
#[test]
fn eval_with_h264_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clean.mkv");
    clean_clip(dir.path(), &clip, 160, 96, 30, "smpte");
    let opts = ["--noise", "camera", "--codec", "h264", "--crf", "23", "--frames", "24"];
    let runs: Vec<Value> = (0..3)
        .map(|_| eval_identity(dir.path(), &clip, &opts)["results"][0].clone())
        .collect();
    for r in &runs {
        assert_eq!(r["frames"], 24, "{r}");
        assert_eq!(r["psnr_noisy"], runs[0]["psnr_noisy"], "{runs:?}");
    }
}

/// --frames N evaluates exactly N frames of a longer clip, with and without a codec.
#[test]
fn eval_evaluates_exactly_the_given_number_of_frames() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clean.mkv");
    clean_clip(dir.path(), &clip, 64, 48, 20, "smpte");
    for codec in ["none", "h264", "jpeg"] {
        for n in ["1", "7"] {
            let report = eval_identity(dir.path(), &clip, &["--codec", codec, "--frames", n]);
            assert_eq!(
                report["results"][0]["frames"].to_string(),
                n,
                "{codec}, --frames {n}: {report}"
            );
        }
    }
}

/// H.264 takes even sizes only: an odd-sized clip goes through the codec padded, and
/// is scored at its own size.
#[test]
fn eval_h264_takes_odd_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("odd.mkv");
    clean_clip(dir.path(), &clip, 33, 17, 3, "smpte");
    let report = eval_identity(dir.path(), &clip, &["--codec", "h264"]);
    let r = &report["results"][0];
    assert_eq!(r["frames"], 3, "{report}");
    assert!(r["psnr_noisy"].as_f64().unwrap() > 15.0, "{report}");
}

#[test]
fn a_presets_model_is_the_model_unless_model_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clean.mkv");
    clean_clip(dir.path(), &clip, 32, 16, 2, "smpte");
    let preset = dir.path().join("preset.toml");
    std::fs::write(
        &preset,
        format!(
            "[denoiseseg]\nmodel = \"{}\"\nexecution-provider = \"cpu\"\n",
            joint_model()
        ),
    )
    .unwrap();
    let model_of = |extra: &[&str]| {
        let json = dir.path().join("preset.json");
        let mut c = app();
        c.arg("eval")
            .arg(&clip)
            .args(["--sigma", "10", "--config"])
            .arg(&preset)
            .args(extra)
            .arg("--json")
            .arg(&json);
        assert!(run(c).status.success());
        let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        report["model_name"].as_str().unwrap().to_string()
    };
    assert_eq!(model_of(&[]), "test-joint", "the preset's model");
    let other = common::test_model("denoise_sigma.onnx");
    assert_eq!(model_of(&["--model", &other]), "test-denoise-sigma", "--model wins");
}

/// A failed run: exit code 1 and one line on stderr that says `what`.
fn fails_with(args: &[&str], what: &str) {
    let mut c = app();
    c.args(args);
    let out = run(c);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("sigma ") && !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one clear line: {stderr}");
    assert!(lines[0].contains(what), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn eval_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = joint_model();
    let missing = dir.path().join("missing.mp4").display().to_string();
    fails_with(&["eval", &missing, "--model", &model], "no such file or folder");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails_with(
        &["eval", &empty.display().to_string(), "--model", &model],
        "no PNG or JPEG images",
    );

    // Labels of another size than the frames.
    let clip = dir.path().join("clean.mkv");
    clean_clip(dir.path(), &clip, 64, 32, 3, "smpte");
    let c = clip.display().to_string();
    fails_with(
        &["eval", &c, "--sigma", "15,25,15", "--model", &model],
        "--sigma 15 is given twice",
    );
    // The report over what the evaluation reads.
    fails_with(&["eval", &c, "--json", &c, "--model", &model], "and --json");
    assert!(std::fs::metadata(&clip).unwrap().len() > 1000, "the clip is untouched");
    let labels = dir.path().join("small-labels.mkv");
    write_labels(dir.path(), &labels, &vec![vec![0u8; 32 * 16]; 3], 32, 16);
    fails_with(
        &[
            "eval",
            &clip.display().to_string(),
            "--labels",
            &labels.display().to_string(),
            "--sigma",
            "10",
            "--model",
            &model,
        ],
        "label map 1 is 32x16, but its frame is 64x32",
    );
    fails_with(
        &[
            "eval",
            &clip.display().to_string(),
            "--labels",
            &dir.path().join("nope.mkv").display().to_string(),
            "--model",
            &model,
        ],
        "no such labels file or folder",
    );
    fails_with(
        &["eval", &clip.display().to_string(), "--sigma", "300", "--model", &model],
        "outside 0..=255",
    );
    fails_with(
        &["eval", &c, "--json", "/proc/denoiseseg-eval.json", "--model", &model],
        "cannot write --json",
    );
}

#[test]
fn bench_reports_both_loops_ratio_and_ordered_percentiles() {
    let mut c = app();
    c.args(["bench", "--model"]).arg(joint_model()).args([
        "--size",
        "64x32",
        "--frames",
        "12",
        "--warmup",
        "2",
        "--provider",
        "cpu",
        "--threads",
        "1",
        "--json",
        "-",
    ]);
    let out = run(c);
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report alone");
    assert_eq!(r["provider"], "cpu");
    assert_eq!(r["bare"]["provider"], "cpu");
    assert_eq!(r["threads"], 1);
    assert_eq!(r["frames"], 12);
    assert_eq!(r["padded_size"], serde_json::json!([64, 32]));
    let bare = r["bare"]["fps"].as_f64().unwrap();
    let pipe = r["pipeline"]["fps"].as_f64().unwrap();
    assert!(bare > 0.0 && pipe > 0.0, "{r}");
    close(&r["ratio"], pipe / bare, "ratio");
    let l = &r["pipeline"]["latency_ms"];
    let (p50, p95, p99) = (
        l["p50"].as_f64().unwrap(),
        l["p95"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
    );
    assert!(0.0 <= p50 && p50 <= p95 && p95 <= p99, "{l}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipeline / bare"), "the table goes to stderr: {stderr}");

    // Batches: frames round up to whole batches.
    let mut c = app();
    c.args(["bench", "--model"]).arg(joint_model()).args([
        "--size",
        "40x24",
        "--frames",
        "5",
        "--warmup",
        "1",
        "--batch-size",
        "2",
        "--repeat",
        "2",
        "--json",
        "-",
    ]);
    let out = run(c);
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["frames"], 6);
    assert_eq!(r["batch_size"], 2);
    assert_eq!(r["pipeline"]["fps_rounds"].as_array().unwrap().len(), 2);
}

#[test]
fn bench_streams_compares_one_shared_engine_with_private_ones() {
    let mut c = app();
    c.args(["bench", "--streams", "3", "--model"]).arg(joint_model()).args([
        "--size",
        "64x32",
        "--frames",
        "12",
        "--warmup",
        "2",
        "--batch-size",
        "2",
        "--provider",
        "cpu",
        "--json",
        "-",
    ]);
    let out = run(c);
    assert!(out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON report alone");
    assert_eq!(r["streams"], 3);
    assert_eq!(r["frames"], 12);
    assert_eq!(r["warmup"], 2);
    let pushed = 14;
    for (config, engine_streams, sessions) in [("shared", 3, 1), ("private", 1, 3)] {
        let c = &r[config];
        assert_eq!(c["engine_streams"], engine_streams, "{config}: {c}");
        assert_eq!(c["sessions"], sessions, "{config}: {c}");
        assert!(c["mean_batch_frames"].as_f64().unwrap() >= 1.0, "{config}: {c}");
        assert!(c["aggregate_fps"].as_f64().unwrap() > 0.0, "{config}: {c}");
        let streams = c["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 3, "{config}: {c}");
        for s in streams {
            assert_eq!(s["pushed"], pushed, "{config}: {s}");
            assert_eq!(s["received"], pushed, "{config}: {s}");
            assert_eq!(s["processed"], pushed, "{config}: {s}");
            assert_eq!(s["frames"], 12, "{config}: {s}");
            assert_eq!(s["engine_streams"], engine_streams, "{config}: {s}");
            assert!(s["mean_batch_frames"].as_f64().unwrap() >= 1.0, "{config}: {s}");
            assert!(s["fps"].as_f64().unwrap() > 0.0, "{config}: {s}");
            let (p50, p99) = (
                s["latency_ms"]["p50"].as_f64().unwrap(),
                s["latency_ms"]["p99"].as_f64().unwrap(),
            );
            assert!(0.0 <= p50 && p50 <= p99, "{config}: {s}");
        }
    }
    let ratio = r["ratio"]["aggregate_fps"].as_f64().unwrap();
    close(
        &r["ratio"]["aggregate_fps"],
        r["shared"]["aggregate_fps"].as_f64().unwrap() / r["private"]["aggregate_fps"].as_f64().unwrap(),
        "shared / private",
    );
    assert!(ratio > 0.0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("shared / private"),
        "the table goes to stderr: {stderr}"
    );
    fails_with(
        &["bench", "--streams", "0", "--size", "64x32"],
        "--streams must be at least 1",
    );
}

#[test]
fn bench_errors_are_one_clear_line() {
    fails_with(&["bench", "--size", "big"], "expected WIDTHxHEIGHT");
    fails_with(
        &["bench", "--model", "/nonexistent/model.onnx", "--size", "64x32"],
        "no model at /nonexistent/model.onnx",
    );
    let model = joint_model();
    let small = ["bench", "--model", &model, "--provider", "cpu", "--size", "64x32"];
    let with = |extra: &[&'static str]| -> Vec<&str> { small.iter().copied().chain(extra.iter().copied()).collect() };
    fails_with(&with(&["--repeat", "0"]), "--repeat must be at least 1");
    fails_with(&with(&["--noise-sigma", "1e9"]), "outside 0..=255");
    fails_with(&with(&["--noise-sigma", "nan"]), "outside 0..=255");
    // A report that cannot be written fails before the measurement (one line, nothing
    // measured), also as root, whom access(2) lets "write" anywhere.
    fails_with(
        &with(&["--json", "/proc/denoiseseg-report.json"]),
        "cannot write --json",
    );
}

/// Starts the app with `args`, waits for a stderr line containing `when`, interrupts
/// it (SIGINT) and returns its exit code and stderr, failing if it takes more than 20 s
/// to stop.
fn interrupt_when(args: &[&str], when: &str) -> (Option<i32>, String) {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let mut child = app()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all += &line;
            all.push('\n');
        }
        all
    });
    let seen = rx.iter().any(|l| l.contains(when));
    assert!(seen, "no '{when}' before the app ended");
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("{args:?} still runs 20 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.code(), reader.join().unwrap())
}

#[test]
fn bench_stops_at_ctrl_c_in_the_bare_loop() {
    let model = joint_model();
    let (code, err) = interrupt_when(
        &[
            "bench",
            "--model",
            &model,
            "--provider",
            "cpu",
            "--size",
            "64x32",
            "--frames",
            "100000000",
        ],
        "bare ONNX Runtime loop",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("error: interrupted"), "{err}");
    assert!(!err.contains("element pipeline"), "no second part after Ctrl-C: {err}");
}

#[test]
fn errors_carry_their_cause_on_the_one_line() {
    // Without -v the line must say why, not only where ("error: bare loop" was all).
    let corrupt = common::test_model("corrupt.onnx");
    fails_with(
        &["bench", "--model", &corrupt, "--size", "64x32", "--frames", "2"],
        "cannot start the bare ONNX Runtime loop: ONNX Runtime: cannot load model",
    );
    fails_with(
        &["bench", "--model", &corrupt, "--size", "64x32"],
        "Protobuf parsing failed",
    );
    // The same model in the element: the element's error says it too.
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clean.mkv");
    clean_clip(dir.path(), &clip, 32, 16, 2, "smpte");
    fails_with(
        &[
            "eval",
            &clip.display().to_string(),
            "--sigma",
            "10",
            "--model",
            &corrupt,
        ],
        "Protobuf parsing failed",
    );
    // A provider the ONNX Runtime library lacks (the CPU library has no CUDA); with the
    // GPU library and a GPU, the run may succeed instead.
    let mut c = app();
    c.args(["bench", "--model", &joint_model(), "--size", "64x32", "--frames", "2"])
        .args(["--warmup", "0", "--provider", "cuda"]);
    let out = run(c);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one clear line: {stderr}");
        assert!(lines[0].contains("execution provider cuda: "), "{stderr}");
    }
}

#[test]
fn eval_and_bench_help_show_examples() {
    for cmd in ["eval", "bench"] {
        let mut c = app();
        c.args([cmd, "--help"]);
        let out = run(c);
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Examples:"), "{text}");
        assert!(text.contains(&format!("denoiseseg {cmd}")), "{text}");
    }
}

/// With `noise-level=-1`, camera noise that H.264 thinned on the predicted frames is
/// read at about the level its keyframe shows, and the shipped default model denoises
/// it: the estimate holds the keyframe's reading (before the hold it read a quarter of
/// the noise and the model gained about 1.5 dB on such clips).
#[test]
fn the_estimate_holds_the_noise_level_h264_keyframes_show() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c = app();
    c.arg("eval")
        .arg(root.join("models/sample/street.mp4"))
        .args(["--noise", "camera", "--codec", "h264", "--crf", "23", "--sigma", "25"])
        .args(["--estimate", "--frames", "12", "--json", "-"]);
    let out = run(c);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let r = &report["results"][0];
    let used = r["noise_level_used"].as_f64().unwrap();
    assert!(
        (15.0..=35.0).contains(&used),
        "camera noise of sigma 25 through H.264 read as {used}"
    );
    let gain = r["psnr_gain"].as_f64().unwrap();
    assert!(gain > 3.0, "the default gained only {gain:.2} dB");
}
