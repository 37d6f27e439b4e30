//! Helpers shared by the app's end-to-end tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_denoiseseg");

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A model from tests/models.
pub fn test_model(name: &str) -> String {
    root().join("tests/models").join(name).display().to_string()
}

/// The app, after checking that the plugin lies beside it (the app loads it from there).
pub fn app() -> Command {
    let plugin = Path::new(BIN)
        .parent()
        .expect("the binary has a folder")
        .join("libgstdenoiseseg.so");
    assert!(
        plugin.is_file(),
        "{} is missing: run `cargo build --release --workspace` (or `make build`) before \
         `cargo test --release`",
        plugin.display()
    );
    let mut c = Command::new(BIN);
    c.env_remove("DENOISESEG_MODEL_DIR");
    c
}

/// Runs a gst-launch-1.0 pipeline (split on whitespace) and asserts it succeeds.
pub fn gst_launch(desc: &str) {
    let args: Vec<&str> = desc.split_whitespace().collect();
    let out = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(&args)
        .output()
        .expect("gst-launch-1.0 runs");
    assert!(
        out.status.success(),
        "gst-launch-1.0 {desc} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh folder for one test's files.
pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dseg-app-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A lossless RGB clip (FFV1 in Matroska) `dir/name` of `n` frames of videotestsrc's
/// `pattern` at `fps` frames per second.
pub fn test_clip(dir: &Path, name: &str, pattern: &str, n: usize, (w, h): (usize, usize), fps: u32) -> PathBuf {
    let path = dir.join(name);
    gst_launch(&format!(
        "videotestsrc num-buffers={n} pattern={pattern} ! video/x-raw,format=RGB,width={w},height={h},framerate={fps}/1 \
         ! videoconvert ! video/x-raw,format=BGRx ! avenc_ffv1 ! matroskamux ! filesink location={}",
        path.display()
    ));
    path
}

/// Decodes `path` and returns its frames as packed RGB or GRAY8 bytes.
pub fn decode(path: &Path, format: &str, w: usize, h: usize) -> Vec<Vec<u8>> {
    // A folder of its own: tests running at once may decode files of one name.
    static DECODES: AtomicUsize = AtomicUsize::new(0);
    let n = DECODES.fetch_add(1, Ordering::Relaxed);
    let dir = tmp(&format!("decode-{n}-{}", path.file_name().unwrap().to_string_lossy()));
    gst_launch(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format={format} \
         ! videoconvert ! video/x-raw,format={format},width={w},height={h} \
         ! multifilesink location={}/%04d.raw",
        path.display(),
        dir.display()
    ));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let bpp = if format == "RGB" { 3 } else { 1 };
    files
        .iter()
        .map(|f| {
            let data = std::fs::read(f).unwrap();
            // GStreamer rows are 4-byte aligned; pack them.
            let stride = (w * bpp).div_ceil(4) * 4;
            (0..h)
                .flat_map(|y| data[y * stride..y * stride + w * bpp].to_vec())
                .collect()
        })
        .collect()
}

/// Runs the app with `args` to its end.
pub fn run(args: &[&str]) -> Output {
    app().args(args).output().expect("the app runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the app and checks that it fails with one line holding `want`, and no panic.
pub fn fails_cleanly(args: &[&str], want: &str) {
    let o = run(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line expected:\n{err}");
    assert!(lines[0].contains(want), "{args:?}: expected '{want}' in:\n{err}");
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
}

/// Starts the app with `args`, waits until `out` (or the partial file it is written as
/// until its first frame) holds `min_bytes` (failing the test after `within`) and then
/// `settle`, sends it SIGINT (Ctrl-C) and waits for its end.
pub fn interrupt_app(args: &[&str], out: &Path, min_bytes: u64, settle: Duration, within: Duration) -> Output {
    signal_app("INT", args, out, min_bytes, settle, within)
}

/// [`interrupt_app`] with another signal (`kill -SIGNAL`: "TERM", "HUP").
pub fn signal_app(
    signal: &str,
    args: &[&str],
    out: &Path,
    min_bytes: u64,
    settle: Duration,
    within: Duration,
) -> Output {
    let child = app()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Until its first frame the app writes `.NAME.PID.partial` beside the file.
    let partial = out.with_file_name(format!(
        ".{}.{}.partial",
        out.file_name().unwrap().to_string_lossy(),
        child.id()
    ));
    let start = Instant::now();
    while [out, partial.as_path()]
        .iter()
        .all(|f| std::fs::metadata(f).map(|m| m.len() < min_bytes).unwrap_or(true))
    {
        assert!(
            start.elapsed() < within,
            "{} does not hold {min_bytes} bytes after {within:?}",
            out.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(settle);
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait_with_output().unwrap()
}
