//! A stream as a client asks for it (`POST /streams`, a `[[stream]]` of the service's
//! config file), checked, and the gst-launch description of its pipeline.
//!
//! Inputs: a file path or `file://` URI (finishes at its end), `rtsp://` (rtspsrc; live,
//! reconnects), `/dev/videoN` (v4l2src; live, reconnects), any other URI that
//! uridecodebin reads (`http(s)://` finishes at its end; `udp://`, `srt://`, `rtmp://`
//! are live and reconnect), and test patterns
//! `videotestsrc://?pattern=ball&num-buffers=100&width=64&height=32&framerate=25/1&is-live=true`
//! (each key optional). `reconnect` overrides whether a stream reconnects.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;
use serde::{Deserialize, Serialize};

use crate::common::{self, quote};

/// rtspsrc's jitter buffer, in milliseconds (as `run`'s default).
const RTSP_LATENCY_MS: u32 = 200;

/// URI schemes of live network streams: they run leaky and reconnect.
const LIVE_SCHEMES: &[&str] = &["rtsp", "rtsps", "rtspt", "rtspu", "udp", "rtp", "srt", "rtmp", "rtmps"];

/// The scheme of the test-pattern source.
const TEST_SCHEME: &str = "videotestsrc://";

/// The name of the muxer (or multifilesink) writing the class maps.
pub const MASK_WRITER: &str = "mask_writer";

/// A stream as asked for: the body of `POST /streams`, a `[[stream]]` of the config.
#[derive(Deserialize, Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// A file, a URI, a camera or a test pattern (see the module's doc).
    pub uri: String,
    /// An .mp4 or .mkv file (H.264); none: processed only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Class maps, losslessly: an .mkv (FFV1) or a PNG pattern (masks/%05d.png).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_output: Option<String>,
    /// `denoised` (default) or `overlay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<String>,
    /// Scale the input to WIDTHxHEIGHT before the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Reconnect after an error or the end of the input [default: live inputs do].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect: Option<bool>,
}

/// Where a checked stream's frames come from: the head of its description.
#[derive(Debug, Clone)]
pub struct Input {
    pub description: String,
    /// Runs in real time whatever the element does: the element runs leaky.
    pub live: bool,
    /// A file read from disk: its path, which no output may overwrite.
    pub file: Option<PathBuf>,
}

/// A file output of a stream: the main video or the class maps.
#[derive(Debug, Clone)]
pub struct OutputPath {
    pub path: PathBuf,
    /// The muxer of an .mp4/.mkv video, or `None` for a PNG pattern of class maps.
    pub mux: Option<&'static str>,
}

impl OutputPath {
    /// The path of reconnection `k` (0: the path as given; then `name.k.ext`), so that a
    /// reconnected stream never overwrites what it wrote before.
    pub fn segment(&self, k: u32) -> PathBuf {
        if k == 0 {
            return self.path.clone();
        }
        let stem = self.path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
        let name = match self.path.extension() {
            Some(ext) => format!("{stem}.{k}.{}", ext.to_string_lossy()),
            None => format!("{stem}.{k}"),
        };
        self.path.with_file_name(name)
    }
}

/// A stream checked and ready to build: everything but the element's own options.
#[derive(Debug, Clone)]
pub struct Plan {
    pub input: Input,
    pub reconnect: bool,
    pub overlay: bool,
    pub size: Option<(u32, u32)>,
    pub output: Option<OutputPath>,
    pub masks: Option<OutputPath>,
}

impl Plan {
    /// Checks a spec: the input exists and parses, the view is known, the outputs' folders
    /// exist and no two files (outputs, input, `taken`: other streams' outputs) are one.
    /// `segments`: whether the model gives class maps (overlay and masks need them).
    pub fn check(spec: &StreamSpec, segments: bool, taken: &[(String, PathBuf)]) -> Result<Plan> {
        let input = parse_input(spec.uri.trim())?;
        let overlay = match spec.view.as_deref().unwrap_or("denoised") {
            "denoised" => false,
            "overlay" => true,
            v => bail!("view '{v}': give denoised or overlay"),
        };
        let size = spec
            .size
            .as_deref()
            .map(|s| common::parse_size(s).map_err(|e| anyhow!("size {s}: {e}")))
            .transpose()?;
        let output = spec.output.as_deref().map(parse_output).transpose()?;
        if let (Some(size), Some(_)) = (size, &output) {
            common::check_h264_size("size", size)?;
        }
        let masks = spec.mask_output.as_deref().map(parse_masks).transpose()?;
        if (overlay || masks.is_some()) && !segments {
            bail!("the service's model does not segment: no overlay view or mask_output");
        }
        let mut files: Vec<(String, PathBuf)> = taken.to_vec();
        if let Some(p) = &input.file {
            files.push((format!("the input {}", p.display()), p.clone()));
        }
        for (what, out) in [("output", &output), ("mask_output", &masks)] {
            if let Some(o) = out {
                // A PNG pattern too: two streams on one pattern overwrite each other's maps.
                let resolved = common::check_output(&o.path).with_context(|| what.to_string())?;
                files.push((format!("{what} {}", o.path.display()), resolved));
            }
        }
        common::check_distinct(&files)?;
        let reconnect = spec.reconnect.unwrap_or(input.live);
        Ok(Plan {
            input,
            reconnect,
            overlay,
            size,
            output,
            masks,
        })
    }

    /// The files (and PNG patterns) this stream writes, resolved, for
    /// [`common::check_distinct`] against the next streams.
    pub fn files(&self, id: &str) -> Vec<(String, PathBuf)> {
        [&self.output, &self.masks]
            .into_iter()
            .flatten()
            .filter_map(|o| common::check_output(&o.path).ok())
            .map(|p| (format!("stream {id}'s {} (until DELETE /streams/{id})", p.display()), p))
            .collect()
    }

    /// The pipeline's description for reconnection `k` (see [`OutputPath::segment`]);
    /// the element is named `d` and gets its options when built. `leaky`: the element
    /// drops frames it cannot take (the RTSP jitter buffer too).
    pub fn description(&self, k: u32, bitrate: u32, leaky: bool) -> String {
        let mut head = self.input.description.replace("{LEAKY}", &leaky.to_string());
        if let Some((w, h)) = self.size {
            head = format!("{head} ! videoconvert ! videoscale ! video/x-raw,width={w},height={h}");
        }
        let view = if self.overlay { "overlay" } else { "denoised" };
        let out = match &self.output {
            Some(o) => common::h264_file(&o.segment(k), o.mux.unwrap_or("matroskamux"), bitrate, self.input.live),
            None => "fakesink sync=false".into(),
        };
        let q = common::queue();
        let mut desc = format!("{head} ! videoconvert ! denoiseseg name=d output={view} ! {q} ! {out}");
        if let Some(m) = &self.masks {
            let path = m.segment(k);
            let writer = match m.mux {
                Some(_) => format!(
                    "avenc_ffv1 ! matroskamux name={MASK_WRITER} ! {}",
                    common::file_sink(&path)
                ),
                None => format!(
                    "pngenc compression-level=1 ! multifilesink name={MASK_WRITER} location={} async=false",
                    quote(&path.display().to_string())
                ),
            };
            desc = format!("{desc} d.mask ! {q} ! {writer}");
        }
        desc
    }
}

/// The muxer for a video output's file extension.
fn muxer(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "mp4" | "mov" => Some("mp4mux"),
        "mkv" => Some("matroskamux"),
        _ => None,
    }
}

fn parse_output(o: &str) -> Result<OutputPath> {
    let path = PathBuf::from(o);
    let mux = muxer(&path).ok_or_else(|| anyhow!("output {o}: give an .mp4 or .mkv file"))?;
    Ok(OutputPath { path, mux: Some(mux) })
}

fn parse_masks(m: &str) -> Result<OutputPath> {
    let path = PathBuf::from(m);
    if m.ends_with(".mkv") {
        Ok(OutputPath {
            path,
            mux: Some("matroskamux"),
        })
    } else if m.ends_with(".png") && m.contains('%') {
        Ok(OutputPath { path, mux: None })
    } else {
        bail!("mask_output {m}: give a PNG pattern such as masks/%05d.png, or an .mkv file")
    }
}

/// Parses and checks an input (see the module's doc). `{LEAKY}` in the description
/// stands for whether the element runs leaky.
pub fn parse_input(uri: &str) -> Result<Input> {
    if uri.is_empty() {
        bail!("uri is empty");
    }
    if let Some(query) = uri.strip_prefix(TEST_SCHEME) {
        return test_pattern(query.strip_prefix('?').unwrap_or(query));
    }
    let scheme = uri.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let (description, live, file) = match scheme.as_deref() {
        Some(s) if s.starts_with("rtsp") => (
            format!(
                "rtspsrc location={} latency={RTSP_LATENCY_MS} drop-on-latency={{LEAKY}} \
                 ! application/x-rtp,media=video ! decodebin",
                quote(uri)
            ),
            true,
            None,
        ),
        Some(s) if s != "file" => (
            format!("uridecodebin uri={}", quote(uri)),
            LIVE_SCHEMES.contains(&s),
            None,
        ),
        _ if uri.starts_with("/dev/video") => {
            if !Path::new(uri).exists() {
                bail!("no camera at {uri}");
            }
            (format!("v4l2src device={}", quote(uri)), true, None)
        }
        _ => {
            let path = Path::new(uri.strip_prefix("file://").unwrap_or(uri));
            if !path.is_file() {
                bail!("no such file: {}", path.display());
            }
            let path = path
                .canonicalize()
                .with_context(|| format!("cannot read {}", path.display()))?;
            let file_uri = format!("file://{}", path.display());
            (format!("uridecodebin uri={}", quote(&file_uri)), false, Some(path))
        }
    };
    Ok(Input {
        description,
        live,
        file,
    })
}

/// `videotestsrc://?KEY=VALUE&...`: pattern, num-buffers and is-live are videotestsrc's
/// properties (checked on a scratch element), width, height and framerate its caps.
fn test_pattern(query: &str) -> Result<Input> {
    let src = gst::ElementFactory::make("videotestsrc")
        .build()
        .context("cannot create videotestsrc")?;
    let (mut props, mut caps) = (Vec::new(), vec!["video/x-raw".to_string()]);
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("{TEST_SCHEME}: '{kv}' is not KEY=VALUE"))?;
        match k {
            "pattern" | "num-buffers" | "is-live" => {
                common::set_property_checked(&src, k, v).with_context(|| format!("{TEST_SCHEME} {k}"))?;
                props.push(format!("{k}={}", quote(v)));
            }
            "width" | "height" => {
                let n: u32 = v
                    .parse()
                    .map_err(|_| anyhow!("{TEST_SCHEME} {k}: '{v}' is not a number"))?;
                if !(8..=8192).contains(&n) {
                    bail!("{TEST_SCHEME} {k}: {n} is outside 8..=8192");
                }
                caps.push(format!("{k}={n}"));
            }
            "framerate" => {
                let (n, d) = v.split_once('/').unwrap_or((v, "1"));
                let (n, d): (u32, u32) = match (n.parse(), d.parse()) {
                    (Ok(n), Ok(d)) if n > 0 && d > 0 => (n, d),
                    _ => bail!("{TEST_SCHEME} framerate: '{v}' is not N or N/D"),
                };
                caps.push(format!("framerate={n}/{d}"));
            }
            _ => bail!("{TEST_SCHEME}: unknown key '{k}' (pattern, num-buffers, is-live, width, height, framerate)"),
        }
    }
    let live = src.property::<bool>("is-live");
    Ok(Input {
        description: format!("videotestsrc {} ! {}", props.join(" "), caps.join(",")),
        live,
        file: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnections_write_numbered_files() {
        let o = OutputPath {
            path: PathBuf::from("/r/cam.mp4"),
            mux: Some("mp4mux"),
        };
        assert_eq!(o.segment(0), PathBuf::from("/r/cam.mp4"));
        assert_eq!(o.segment(2), PathBuf::from("/r/cam.2.mp4"));
    }

    #[test]
    fn inputs_parse_by_scheme() {
        let rtsp = parse_input("rtsp://cam/s").unwrap();
        assert!(rtsp.live && rtsp.description.starts_with("rtspsrc"));
        let http = parse_input("https://host/a.mp4").unwrap();
        assert!(!http.live && http.description.starts_with("uridecodebin"));
        assert!(parse_input("udp://0.0.0.0:5000").unwrap().live);
        assert!(parse_input("/no/such/file.mp4")
            .unwrap_err()
            .to_string()
            .contains("no such file"));
        assert!(parse_input("").is_err());
    }
}
