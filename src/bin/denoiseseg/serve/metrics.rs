//! `GET /metrics`: the streams' and the engine's figures in Prometheus' text exposition
//! format (version 0.0.4).
use std::fmt::Write;

use super::streams::{State, Status};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value, escaped as the format wants (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One metric family: its help, its type, and a sample per (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: impl IntoIterator<Item = (String, f64)>) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// The metrics page for `streams`, whose elements share the engine `engine_id`.
pub fn render(streams: &[Status], engine_id: &str) -> String {
    let mut out = String::new();
    let per_stream = |f: fn(&Status) -> f64| -> Vec<(String, f64)> {
        streams
            .iter()
            .map(|s| (format!("id=\"{}\"", label(&s.id)), f(s)))
            .collect()
    };
    family(
        &mut out,
        "denoiseseg_stream_frames_total",
        "counter",
        "Frames the stream's element gave, over every reconnection.",
        per_stream(|s| s.frames as f64),
    );
    family(
        &mut out,
        "denoiseseg_stream_drops_total",
        "counter",
        "Frames the stream's element dropped (leaky, late).",
        per_stream(|s| s.drops as f64),
    );
    family(
        &mut out,
        "denoiseseg_stream_fps",
        "gauge",
        "Frames per second the stream's element gives, over the last half second.",
        per_stream(|s| s.fps),
    );
    family(
        &mut out,
        "denoiseseg_stream_latency_seconds",
        "gauge",
        "Mean time a frame spends in the stream's element.",
        per_stream(|s| s.latency_ms / 1000.0),
    );
    family(
        &mut out,
        "denoiseseg_stream_reconnects_total",
        "counter",
        "Times the stream's input was reconnected.",
        per_stream(|s| s.reconnects as f64),
    );
    family(
        &mut out,
        "denoiseseg_stream_state",
        "gauge",
        "1 for the stream's state.",
        streams.iter().flat_map(|s| {
            State::ALL.into_iter().map(move |st| {
                (
                    format!("id=\"{}\",state=\"{}\"", label(&s.id), st.name()),
                    f64::from(u8::from(s.state == st)),
                )
            })
        }),
    );
    // The engine as the latest running stream sees it (every stream shares it).
    let engine = streams
        .iter()
        .rev()
        .filter(|s| s.state == State::Running)
        .find_map(|s| s.engine)
        .unwrap_or_default();
    let e = format!("engine=\"{}\"", label(engine_id));
    family(
        &mut out,
        "denoiseseg_engine_mean_batch_frames",
        "gauge",
        "Frames per model run of the shared engine, from all its streams.",
        [(e.clone(), engine.mean_batch_frames)],
    );
    family(
        &mut out,
        "denoiseseg_engine_busy_ratio",
        "gauge",
        "Share of the shared engine's inference thread time spent running the model.",
        [(e.clone(), engine.busy)],
    );
    family(
        &mut out,
        "denoiseseg_engine_streams",
        "gauge",
        "Elements on the shared engine.",
        [(e, engine.streams as f64)],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
