//! End-to-end tests of `denoiseseg serve`: the built binary on an ephemeral loopback
//! port, driven over HTTP/1.1 by a hand-written client, with test-pattern streams and
//! the joint test model on the CPU. Needs `cargo build --release --workspace` first.
#![cfg(feature = "cli")]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{app, test_model};

fn tmp(name: &str) -> PathBuf {
    common::tmp(&format!("serve-{name}"))
}

/// `serve --port 0` on the joint test model, on the CPU.
fn serve() -> Command {
    let mut c = app();
    c.args([
        "serve",
        "--port",
        "0",
        "--provider",
        "cpu",
        "--model",
        &test_model("joint.onnx"),
    ]);
    c
}

/// A live test pattern the joint model takes as it is (64x32).
const LIVE: &str = "videotestsrc://?pattern=ball&width=64&height=32&framerate=25/1&is-live=true";

/// The service, killed if a test fails before it stops it.
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Server {
    /// Starts `serve --port 0` on the joint test model, with `extra` options, and reads
    /// the address from its first line.
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let log = dir.join("serve.log");
        let mut child = serve()
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the app runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line {line:?}; log: {}", std::fs::read_to_string(&log).unwrap()))
            .to_string();
        assert!(addr.starts_with("127.0.0.1:"), "binds to loopback by default: {addr}");
        Server { child, addr, log }
    }

    /// One request; the status and the body.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (status, body.to_string())
    }

    fn json(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, text) = self.call(method, path, body);
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text:?}"));
        (status, v)
    }

    /// `POST /streams`; the new stream's id.
    fn add(&self, spec: Value) -> String {
        let (status, v) = self.json("POST", "/streams", Some(&spec.to_string()));
        assert_eq!(status, 201, "{spec}: {v}");
        v["id"].as_str().expect("an id").to_string()
    }

    fn stream(&self, id: &str) -> Value {
        let (status, v) = self.json("GET", &format!("/streams/{id}"), None);
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Waits (at most 60 s) until stream `id` satisfies `ok`; returns its status.
    fn wait_for(&self, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        poll(&format!("stream {id} {what}"), 60, || {
            let v = self.stream(id);
            if ok(&v) {
                Ok(v)
            } else {
                Err(format!("{v}\n{}", self.log()))
            }
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; waits (at most 30 s) for it to exit, and asserts it exited 0.
    fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let log = self.log.clone();
        let status = poll("exit after SIGTERM", 30, || {
            self.child
                .try_wait()
                .unwrap()
                .ok_or_else(|| std::fs::read_to_string(&log).unwrap_or_default())
        });
        assert!(status.success(), "{status}:\n{}", self.log());
        self.log()
    }
}

/// Calls `f` every 100 ms until it gives `Ok`, failing the test after `secs` with what
/// its last `Err` says.
fn poll<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        let last = match f() {
            Ok(t) => return t,
            Err(last) => last,
        };
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "never: {what}; last:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The frames of a finalized video file (decoded to GRAY8 64x32), or a failure if it
/// does not play to its end.
fn frames_in(path: &Path) -> usize {
    let raw = path.with_extension("raw");
    let out = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "filesrc",
            &format!("location={}", path.display()),
            "!",
            "decodebin",
            "!",
        ])
        .args([
            "videoconvert",
            "!",
            "videoscale",
            "!",
            "video/x-raw,format=GRAY8,width=64,height=32",
            "!",
        ])
        .args(["filesink", &format!("location={}", raw.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} does not play: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::metadata(&raw).unwrap().len() as usize / (64 * 32)
}

fn frames(v: &Value) -> u64 {
    v["frames"].as_u64().unwrap_or(0)
}

#[test]
fn streams_share_one_engine_report_metrics_and_finalize_their_files() {
    let dir = tmp("streams");
    let junk = dir.join("gone.mp4");
    std::fs::write(&junk, "not a video").unwrap();
    let s = Server::start(&dir, &[]);
    let (a_out, a_mask, b_out) = (dir.join("a.mp4"), dir.join("a-mask.mkv"), dir.join("b.mkv"));
    let a = s.add(json!({"uri": LIVE, "output": a_out, "mask_output": a_mask, "view": "overlay"}));
    let big = "videotestsrc://?pattern=smpte&width=128&height=64&is-live=true";
    let b = s.add(json!({"uri": big, "output": b_out, "size": "64x32"}));
    // A source that turns out to be no video: it fails, the others keep running.
    let c = s.add(json!({"uri": format!("file://{}", junk.display())}));
    let failed = s.wait_for(&c, "failed", |v| v["state"] == "failed");
    assert!(!failed["error"].as_str().unwrap_or("").is_empty(), "{failed}");
    for id in [&a, &b] {
        s.wait_for(id, "ran 10 frames", |v| v["state"] == "running" && frames(v) >= 10);
    }

    let (status, list) = s.json("GET", "/streams", None);
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str(), b.as_str(), c.as_str()]);
    assert!(list[0]["fps"].as_f64().unwrap() > 0.0, "{list}");
    assert_eq!(list[0]["view"], "overlay");

    // Metrics: a line per stream, and both running elements on the one shared engine.
    let metrics = poll("a shared engine of 2 streams in the metrics", 20, || {
        let (status, text) = s.call("GET", "/metrics", None);
        assert_eq!(status, 200);
        if text.contains("denoiseseg_engine_streams{engine=\"serve\"} 2") {
            Ok(text)
        } else {
            Err(text)
        }
    });
    for id in [&a, &b, &c] {
        for family in ["frames_total", "drops_total", "fps", "latency_seconds"] {
            let line = format!("denoiseseg_stream_{family}{{id=\"{id}\"}} ");
            assert!(metrics.contains(&line), "no {line} in\n{metrics}");
        }
    }
    assert!(metrics.contains(&format!("denoiseseg_stream_state{{id=\"{c}\",state=\"failed\"}} 1")));
    assert!(metrics.contains("denoiseseg_engine_mean_batch_frames{engine=\"serve\"} "));
    assert!(metrics.contains("# TYPE denoiseseg_stream_frames_total counter"));
    let (status, health) = s.json("GET", "/health", None);
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    // A stream over before its first sample still reports its latency.
    let d = s.add(json!({"uri": "videotestsrc://?pattern=ball&num-buffers=3&width=64&height=32"}));
    let done = s.wait_for(&d, "finished", |v| v["state"] == "finished");
    assert_eq!(frames(&done), 3, "{done}");
    assert!(done["latency_ms"].as_f64().unwrap_or(0.0) > 0.0, "{done}");

    // Deleting a stream finalizes its files and leaves the other running.
    let (status, gone) = s.json("DELETE", &format!("/streams/{a}"), None);
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["state"], "finished", "{gone}");
    let n = frames_in(&a_out);
    assert!(n >= 10, "{} holds {n} frames", a_out.display());
    assert_eq!(frames_in(&a_mask), n, "one class map per frame");
    assert_eq!(s.call("GET", &format!("/streams/{a}"), None).0, 404);
    let before = frames(&s.stream(&b));
    s.wait_for(&b, "went on", |v| v["state"] == "running" && frames(v) > before + 5);

    // SIGTERM stops the rest cleanly and exits 0.
    let log = s.terminate();
    assert!(log.contains("shutting down"), "{log}");
    assert!(frames_in(&b_out) > 10, "{log}");
}

#[test]
fn bad_requests_get_a_4xx_with_a_json_error() {
    let dir = tmp("bad");
    let s = Server::start(&dir, &[]);
    let cases: &[(&str, &str, Option<String>, u16, &str)] = &[
        ("POST", "/streams", Some("{\"uri\": ".into()), 400, "bad JSON"),
        ("POST", "/streams", Some("".into()), 400, "empty"),
        (
            "POST",
            "/streams",
            Some("{\"output\": \"x.mp4\"}".into()),
            400,
            "missing field `uri`",
        ),
        (
            "POST",
            "/streams",
            Some("{\"uri\": \"x\", \"colour\": 1}".into()),
            400,
            "unknown field",
        ),
        (
            "POST",
            "/streams",
            Some(json!({"uri": LIVE, "view": "sideways"}).to_string()),
            400,
            "view 'sideways'",
        ),
        (
            "POST",
            "/streams",
            Some(json!({"uri": "/no/such/clip.mp4"}).to_string()),
            400,
            "no such file",
        ),
        (
            "POST",
            "/streams",
            Some(json!({"uri": LIVE, "output": "/no/such/folder/out.mp4"}).to_string()),
            400,
            "does not exist",
        ),
        (
            "POST",
            "/streams",
            Some(json!({"uri": LIVE, "output": dir.join("o.avi")}).to_string()),
            400,
            ".mp4 or .mkv",
        ),
        (
            "POST",
            "/streams",
            Some(json!({"uri": LIVE, "size": "4x4"}).to_string()),
            400,
            "size 4x4",
        ),
        (
            "POST",
            "/streams",
            Some(json!({"uri": LIVE, "size": "63x32", "output": dir.join("odd.mp4")}).to_string()),
            400,
            "even",
        ),
        (
            "POST",
            "/streams",
            Some(json!({"uri": "videotestsrc://?pattern=plaid"}).to_string()),
            400,
            "pattern",
        ),
        (
            "POST",
            "/streams",
            Some(json!({"uri": "videotestsrc://?speed=3"}).to_string()),
            400,
            "unknown key",
        ),
        ("GET", "/streams/42", None, 404, "no stream 42"),
        ("DELETE", "/streams/x", None, 404, "no stream x"),
        ("GET", "/nowhere", None, 404, "no such endpoint"),
        ("PUT", "/streams", None, 405, "not allowed"),
    ];
    for (method, path, body, want, says) in cases {
        let (status, v) = s.json(method, path, body.as_deref());
        let error = v["error"].as_str().unwrap_or_else(|| panic!("{method} {path}: {v}"));
        assert_eq!(status, *want, "{method} {path} {body:?}: {error}");
        assert!(error.contains(says), "{method} {path} {body:?}: {error}");
    }
    // Two streams never write one file.
    let out = dir.join("one.mkv");
    s.add(json!({"uri": LIVE, "output": out}));
    let (status, v) = s.json(
        "POST",
        "/streams",
        Some(&json!({"uri": LIVE, "output": out}).to_string()),
    );
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("same file"), "{v}");
    // Nor one PNG pattern of class maps.
    let masks = dir.join("%05d.png");
    s.add(json!({"uri": LIVE, "mask_output": masks}));
    let (status, v) = s.json(
        "POST",
        "/streams",
        Some(&json!({"uri": LIVE, "mask_output": masks}).to_string()),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("same file"), "{v}");
    // Nor the file of a finished stream still in the list (its status tells of it).
    let short = dir.join("short.mkv");
    let id = s.add(json!({"uri": "videotestsrc://?num-buffers=3&width=64&height=32", "output": short}));
    s.wait_for(&id, "finished", |v| v["state"] == "finished");
    let (status, v) = s.json(
        "POST",
        "/streams",
        Some(&json!({"uri": LIVE, "output": short}).to_string()),
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("until DELETE /streams/{id}")),
        "{v}"
    );
    let (status, _) = s.json("DELETE", &format!("/streams/{id}"), None);
    assert_eq!(status, 200);
    let (status, list) = s.json("GET", "/streams", None);
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(2)));
    // A port already taken is an error at launch.
    let port = s.addr.rsplit(':').next().unwrap().to_string();
    let o = app()
        .args([
            "serve",
            "--port",
            &port,
            "--provider",
            "cpu",
            "--model",
            &test_model("joint.onnx"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on 127.0.0.1:"), "{err}");
    s.terminate();
}

#[test]
fn config_streams_start_at_launch_and_live_inputs_reconnect() {
    let dir = tmp("config");
    let out = dir.join("short.mkv");
    let config = dir.join("streams.toml");
    std::fs::write(
        &config,
        format!(
            "[[stream]]\nuri = \"videotestsrc://?pattern=snow&num-buffers=20&width=64&height=32\"\noutput = \"{}\"\n\n\
             [[stream]]\nuri = \"rtsp://127.0.0.1:9/nothing-listens-here\"\n",
            out.display()
        ),
    )
    .unwrap();
    let s = Server::start(&dir, &["--config", config.to_str().unwrap()]);
    // A finite input finishes, its file finalized.
    let done = s.wait_for("1", "finished", |v| v["state"] == "finished");
    assert_eq!(frames(&done), 20, "{done}");
    assert_eq!(frames_in(&out), 20);
    // A camera that does not answer: reconnected, with a backoff, and reported.
    let camera = s.wait_for("2", "reconnected", |v| v["reconnects"].as_u64() >= Some(2));
    assert_eq!(camera["state"], "reconnecting", "{camera}");
    assert!(camera["error"].as_str().unwrap_or("").contains("connect"), "{camera}");
    // Stopped while it waits to reconnect: at once.
    let start = Instant::now();
    let (status, v) = s.json("DELETE", "/streams/2", None);
    assert_eq!((status, &v["state"]), (200, &json!("finished")), "{v}");
    assert!(start.elapsed() < Duration::from_secs(5));
    // A file finishes at its end, every frame written.
    let clip = common::test_clip(&dir, "clip.mkv", "smpte", 30, (64, 32), 25);
    let from_file = dir.join("from-file.mp4");
    let id = s.add(json!({"uri": clip, "output": from_file, "view": "overlay"}));
    let done = s.wait_for(&id, "finished", |v| v["state"] == "finished");
    assert_eq!(frames(&done), 30, "{done}");
    assert_eq!(frames_in(&from_file), 30);

    // Told to reconnect, a finite input starts again at its end, into a new file each time.
    let again = dir.join("again.mkv");
    let uri = "videotestsrc://?pattern=ball&num-buffers=10&width=64&height=32";
    let id = s.add(json!({"uri": uri, "output": again, "reconnect": true}));
    s.wait_for(&id, "reconnected twice", |v| {
        v["reconnects"].as_u64() >= Some(2) && frames(v) >= 20
    });
    let (status, v) = s.json("DELETE", &format!("/streams/{id}"), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(frames_in(&again), 10);
    assert_eq!(frames_in(&dir.join("again.1.mkv")), 10);
    s.terminate();

    // A bad stream in the config is an error at launch, naming it.
    std::fs::write(
        &config,
        "[[stream]]\nuri = \"videotestsrc://\"\nview = \"upside-down\"\n",
    )
    .unwrap();
    let o = serve().args(["--config", config.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("config: stream 1: view 'upside-down'"), "{err}");
    // A bad second entry: the first never starts, and the file it names stays as it was.
    std::fs::write(&out, "yesterday's recording").unwrap();
    std::fs::write(
        &config,
        format!(
            "[[stream]]\nuri = \"videotestsrc://?num-buffers=5&width=64&height=32\"\noutput = \"{}\"\n\n\
             [[stream]]\nuri = \"{}\"\n",
            out.display(),
            dir.join("no-such-clip.mp4").display()
        ),
    )
    .unwrap();
    let o = serve().args(["--config", config.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("config: stream 2") && !err.contains("stopping"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "yesterday's recording");
}
