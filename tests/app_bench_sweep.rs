//! End-to-end tests of `denoiseseg bench --batch-size 1,4,8` (the sweep): the built
//! binary on the shipped default model and on tests/models/joint.onnx at tiny sizes,
//! checking the report's structure and counts, never its timings (the machine is
//! shared). Needs `cargo build --release --workspace` first.
#![cfg(feature = "cli")]

use serde_json::Value;

mod common;
use common::{fails_cleanly, run, stderr, test_model};

fn json_report(args: &[&str]) -> (Value, String) {
    let o = run(args);
    let err = stderr(&o);
    assert!(o.status.success(), "{args:?} failed:\n{err}");
    let r: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("stdout is the JSON report: {e}\n{err}"));
    (r, err)
}

#[test]
fn a_sweep_reports_one_row_per_batch_size_on_the_shipped_model() {
    // A long batch timeout: every batch fills, so the element runs exactly the batch
    // size it was given, as the bare loop does (frames and warm-up are whole batches).
    let (r, err) = json_report(&[
        "bench",
        "--provider",
        "cpu",
        "--size",
        "128x64",
        "--threads",
        "1",
        "--frames",
        "3",
        "--warmup",
        "1",
        "--batch-size",
        "1,2,4",
        "--batch-timeout",
        "10000",
        "--json",
        "-",
    ]);
    assert_eq!(r["batch_sizes"], serde_json::json!([1, 2, 4]));
    assert_eq!(r["threads"], 1);
    assert_eq!(r["repeat"], 1);
    assert!(
        r.get("bare").is_none(),
        "the batch-specific figures are in the rows: {r}"
    );
    let rows = r["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{r}");
    for (row, (batch, frames, warmup)) in rows.iter().zip([(1, 3, 1), (2, 4, 2), (4, 4, 4)]) {
        assert_eq!(row["batch_size"], batch, "{row}");
        assert_eq!(row["frames"], frames, "frames round up to whole batches: {row}");
        assert_eq!(row["warmup"], warmup, "{row}");
        let p = &row["pipeline"];
        assert_eq!(
            p["element_mean_batch_frames"], batch as f64,
            "the element ran full batches: {row}"
        );
        assert_eq!(p["window_batch_frames"], batch as f64, "{row}");
        assert_eq!(p["timed_frames_rounds"], serde_json::json!([frames]), "{row}");
        assert_eq!(p["fps_rounds"].as_array().unwrap().len(), 1);
        assert!(p["fps"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["bare"]["fps"].as_f64().unwrap() > 0.0, "{row}");
        let busy = p["element_busy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&busy), "{row}");
        let l = &p["latency_ms"];
        assert!(l["p50"].as_f64().unwrap() <= l["p99"].as_f64().unwrap(), "{row}");
        assert!(row["ratio"].as_f64().unwrap() > 0.0, "{row}");
    }
    // The table: one line per batch size, on stderr (the JSON has stdout).
    let table: Vec<&str> = err.lines().skip_while(|l| !l.starts_with("batch ")).collect();
    assert!(table.len() > 3, "{err}");
    for (line, batch) in table[1..4].iter().zip(["1", "2", "4"]) {
        assert_eq!(line.split_whitespace().next(), Some(batch), "{err}");
    }
    assert!(err.contains("batch sizes 1,2,4"), "{err}");
}

#[test]
fn rounds_go_over_every_batch_size_in_turn() {
    let (r, err) = json_report(&[
        "bench",
        "--model",
        &test_model("joint.onnx"),
        "--provider",
        "cpu",
        "--size",
        "40x24",
        "--frames",
        "2",
        "--warmup",
        "1",
        "--batch-size",
        "2",
        "--batch-size",
        "1",
        "--repeat",
        "2",
        "--json",
        "-",
    ]);
    let rows = r["rows"].as_array().expect("rows");
    let batches: Vec<u64> = rows.iter().map(|r| r["batch_size"].as_u64().unwrap()).collect();
    assert_eq!(batches, [2, 1], "in the order given");
    for row in rows {
        assert_eq!(row["pipeline"]["fps_rounds"].as_array().unwrap().len(), 2, "{row}");
        assert_eq!(row["bare"]["fps_rounds"].as_array().unwrap().len(), 2, "{row}");
    }
    // Interleaved: round 1 of both batch sizes, then round 2 of both.
    let order: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("element pipeline at batch"))
        .collect();
    assert_eq!(order.len(), 4, "{err}");
    assert!(
        order[0].contains("batch 2:") && order[0].contains("round 1 of 2"),
        "{err}"
    );
    assert!(
        order[1].contains("batch 1:") && order[1].contains("round 1 of 2"),
        "{err}"
    );
    assert!(
        order[2].contains("batch 2:") && order[2].contains("round 2 of 2"),
        "{err}"
    );
}

#[test]
fn one_batch_size_keeps_the_one_batch_report() {
    let (r, err) = json_report(&[
        "bench",
        "--model",
        &test_model("joint.onnx"),
        "--provider",
        "cpu",
        "--size",
        "40x24",
        "--frames",
        "4",
        "--warmup",
        "2",
        "--batch-size",
        "2",
        "--json",
        "-",
    ]);
    assert!(r.get("rows").is_none(), "{r}");
    assert_eq!(r["batch_size"], 2);
    assert_eq!(r["frames"], 4);
    assert!(r["bare"]["fps"].as_f64().unwrap() > 0.0);
    assert!(r["pipeline"]["fps"].as_f64().unwrap() > 0.0);
    assert!(err.contains("pipeline / bare = "), "{err}");
    assert!(
        err.contains("bare ONNX Runtime loop: 2 warm-up + 4 frames ..."),
        "{err}"
    );
}

#[test]
fn absurd_batch_size_lists_are_clear_errors() {
    let model = test_model("joint.onnx");
    let base = ["bench", "--model", &model, "--size", "40x24", "--frames", "2"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(extra).copied().collect()
    }
    fails_cleanly(&with(&base, &["--batch-size", "1,4,1"]), "1 is given twice");
    // max-in-flight follows each batch size unless given.
    fails_cleanly(
        &with(&base, &["--batch-size", "1,16", "--max-in-flight", "8"]),
        "max-in-flight 8 is less than batch-size 16",
    );
    fails_cleanly(
        &with(&base, &["--batch-size", "1,2", "--streams", "2"]),
        "--streams 2 takes one --batch-size, not a list",
    );
    // clap's own errors (a usage line follows the error line): no panic, exit code 2.
    for (value, what) in [
        ("0", "0 is not in 1..=64"),
        ("1,65", "65 is not in 1..=64"),
        ("1,x", "invalid digit"),
        ("", "empty string"),
    ] {
        let o = run(&with(&base, &["--batch-size", value]));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "--batch-size '{value}': {err}");
        assert!(
            err.contains(what) && err.contains("--batch-size"),
            "--batch-size '{value}': {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
