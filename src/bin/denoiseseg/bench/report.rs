//! The bench's report: the table and the JSON of one batch size (the format the bench
//! always had) or of a sweep over several (one row per batch size).
use serde_json::{json, Value};

use super::sweep::{Row, Setup};

/// The nearest-rank percentile `q` (0..=1) of sorted values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median (the mean of the middle two for an even count; NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

/// What the report says about the run besides the rows.
pub struct Context<'a> {
    pub setup: &'a Setup<'a>,
    pub input_noise_sigma: f32,
}

impl Context<'_> {
    fn threads(&self) -> String {
        match self.setup.settings.threads {
            0 => "auto".to_string(),
            t => t.to_string(),
        }
    }

    /// The fields every report has, before the batch-specific ones.
    fn common_json(&self, provider: &str) -> serde_json::Map<String, Value> {
        let (s, (w, h), (pw, ph)) = (self.setup.settings, self.setup.size, self.setup.padded);
        let v = json!({
            "command": "bench",
            "model": s.model.display().to_string(),
            "model_name": self.setup.spec.name,
            "size": [w, h],
            "padded_size": [pw, ph],
            "threads": s.threads,
            "provider_requested": s.provider.name(),
            "provider": provider,
            "noise_level": s.noise_level,
            "input_noise_sigma": self.input_noise_sigma,
            "repeat": self.setup.repeat,
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        }
    }
}

/// One batch size's figures, as the JSON report has them.
fn row_json(r: &Row) -> serde_json::Map<String, Value> {
    let lat = &r.latencies_ms;
    let v = json!({
        "batch_size": r.batch,
        "warmup": r.warmup,
        "frames": r.frames,
        "bare": {
            "fps": r.bare_median(),
            "fps_rounds": r.bare_fps,
            "provider": r.bare_provider,
            "session_build_s": r.bare_build_s,
            "engine_cache": r.bare_cache,
            "ms_per_batch_median": percentile(&r.ms_per_batch, 0.5),
        },
        "pipeline": {
            "fps": r.pipe_median(),
            "fps_rounds": r.pipe_fps,
            "timed_frames_rounds": r.timed_frames,
            "latency_ms": {
                "p50": r.latency(0.5),
                "p95": r.latency(0.95),
                "p99": r.latency(0.99),
                "mean": lat.iter().sum::<f64>() / lat.len().max(1) as f64,
                "max": lat.last().copied().unwrap_or(f64::NAN),
            },
            "element_mean_latency_ms": median(&r.element_latency),
            "element_mean_batch_ms": median(&r.element_batch_ms),
            "element_busy": median(&r.element_busy),
            "element_mean_batch_frames": median(&r.element_batch_frames),
            "window_batch_frames": median(&r.window_batch_frames),
            "element_build_ms": r.element_build_ms,
            "engine_cache": r.engine_cache,
            "concurrent_runs": r.concurrent_runs,
        },
        "ratio": r.ratio(),
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("an object"),
    }
}

/// The note after a ratio below the CPU target.
fn cpu_note(provider: &str, ratio: f64) -> &'static str {
    if provider == "cpu" && ratio < 0.95 {
        " (below the 0.95 target on CPU)"
    } else {
        ""
    }
}

/// One batch size: the table and JSON the bench has always written.
pub fn single(c: &Context, r: &Row) -> (String, Value) {
    let (w, h) = c.setup.size;
    let (pw, ph) = c.setup.padded;
    let mut report = c.common_json(&r.provider);
    let mut row = row_json(r);
    // The single report's order: batch size with the settings, then the counts.
    report.insert("batch_size".into(), row.remove("batch_size").unwrap_or_default());
    for key in ["warmup", "frames"] {
        report.insert(key.into(), row.remove(key).unwrap_or_default());
    }
    report.extend(row);
    let (p50, p95, p99) = (r.latency(0.5), r.latency(0.95), r.latency(0.99));
    let table = format!(
        "model {} at {w}x{h} (padded {pw}x{ph}), batch {}, threads {}, provider {}\n\
         {:<22} {:>10} {:>10} {:>10} {:>10}\n\
         {:<22} {:>10.2} {:>10} {:>10} {:>10}\n\
         {:<22} {:>10.2} {:>10.1} {:>10.1} {:>10.1}\n\
         one model run: {:.1} ms bare, {:.1} ms in the element, which ran the model {:.1} % of the time\n\
         pipeline / bare = {:.3}{}",
        c.setup.spec.name,
        r.batch,
        c.threads(),
        r.provider,
        "",
        if c.setup.repeat > 1 { "median f/s" } else { "frames/s" },
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "bare ONNX Runtime loop",
        r.bare_median(),
        "-",
        "-",
        "-",
        "element pipeline",
        r.pipe_median(),
        p50,
        p95,
        p99,
        percentile(&r.ms_per_batch, 0.5),
        median(&r.element_batch_ms),
        100.0 * median(&r.element_busy),
        r.ratio(),
        cpu_note(&r.provider, r.ratio()),
    );
    let mut table = table;
    if let Some(note) = batch_note(r) {
        table.push('\n');
        table.push_str(&note);
    }
    (table, Value::Object(report))
}

/// When the element's runs in the timed window held fewer frames than the batch size
/// (batch-timeout runs a batch before it is full), a line that says so: the pipeline
/// then ran another batch size than the bare loop.
fn batch_note(r: &Row) -> Option<String> {
    let ran = median(&r.window_batch_frames);
    (ran.is_finite() && ran < r.batch as f64 - 0.05).then(|| {
        format!(
            "note: the element ran {ran:.2} frames per model run in the timed window, not {} \
             (batch-timeout ran batches before they filled)",
            r.batch
        )
    })
}

/// Several batch sizes: one table row and one JSON row each.
pub fn sweep(c: &Context, rows: &[Row]) -> (String, Value) {
    let (w, h) = c.setup.size;
    let (pw, ph) = c.setup.padded;
    let provider = rows.first().map(|r| r.provider.clone()).unwrap_or_default();
    let mut report = c.common_json(&provider);
    report.insert(
        "batch_sizes".into(),
        json!(rows.iter().map(|r| r.batch).collect::<Vec<_>>()),
    );
    report.insert(
        "rows".into(),
        Value::Array(rows.iter().map(|r| Value::Object(row_json(r))).collect()),
    );
    let rounds = if c.setup.repeat > 1 {
        format!("medians of {} rounds", c.setup.repeat)
    } else {
        "one round".to_string()
    };
    let mut table = format!(
        "model {} at {w}x{h} (padded {pw}x{ph}), batch sizes {}, threads {}, provider {}; \
         {} frames timed (+{} warm-up, rounded up to whole batches), {rounds}\n\
         {:>5} {:>10} {:>10} {:>7} {:>8} {:>8} {:>6} {:>7} {:>9} {:>9}\n",
        c.setup.spec.name,
        rows.iter().map(|r| r.batch.to_string()).collect::<Vec<_>>().join(","),
        c.threads(),
        provider,
        c.setup.frames,
        c.setup.warmup,
        "batch",
        "bare f/s",
        "pipe f/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "busy",
        "ran",
        "bare ms",
        "elem ms",
    );
    for r in rows {
        table.push_str(&format!(
            "{:>5} {:>10.2} {:>10.2} {:>7.3} {:>8.1} {:>8.1} {:>5.1}% {:>7.2} {:>9.1} {:>9.1}\n",
            r.batch,
            r.bare_median(),
            r.pipe_median(),
            r.ratio(),
            r.latency(0.5),
            r.latency(0.99),
            100.0 * median(&r.element_busy),
            median(&r.window_batch_frames),
            percentile(&r.ms_per_batch, 0.5),
            median(&r.element_batch_ms),
        ));
    }
    table.push_str(
        "ratio: pipe / bare frames/s; p50/p99: pipeline latency (saturated); busy: share of time the \
         element ran the model (its queue's timing);\nran: frames per model run in the element's timed window; \
         bare ms / elem ms: one model run (one batch) in the bare loop / in the element",
    );
    let low: Vec<String> = rows
        .iter()
        .filter(|r| !cpu_note(&r.provider, r.ratio()).is_empty())
        .map(|r| r.batch.to_string())
        .collect();
    for note in rows.iter().filter_map(batch_note) {
        table.push('\n');
        table.push_str(&note);
    }
    if !low.is_empty() {
        table.push_str(&format!("\nbelow the 0.95 target on CPU at batch {}", low.join(", ")));
    }
    (table, Value::Object(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
