//! What `run` reads and writes: its sources (files, URIs, RTSP, cameras), its outputs
//! (a file, the screen or nothing) and class-map outputs, each as a piece of a
//! gst-launch description, and the checks of the files it writes.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::RtspTransport;
use crate::common::{self, quote, OutputFile};

/// rtspsrc's jitter buffer for RTSP inputs, when --rtsp-latency is not given (rtspsrc's
/// own default, 2000 ms, is long for a live view).
const DEFAULT_RTSP_LATENCY_MS: u32 = 200;

/// URI schemes of live streams: the source runs in real time whatever the app does.
const LIVE_SCHEMES: &[&str] = &["rtsp", "rtsps", "rtspt", "rtspu", "udp", "rtp", "srt", "rtmp", "rtmps"];

/// Whether `input` is an RTSP URI (rtsp://, rtsps://, rtspt://, rtspu://).
pub fn is_rtsp(input: &str) -> bool {
    input
        .split_once("://")
        .is_some_and(|(s, _)| s.to_ascii_lowercase().starts_with("rtsp"))
}

/// Where the frames come from.
pub enum Source {
    File(PathBuf),
    /// A URI that uridecodebin reads; `live` for the schemes of [`LIVE_SCHEMES`].
    Uri {
        uri: String,
        live: bool,
    },
    Rtsp {
        uri: String,
        latency_ms: u32,
        transport: RtspTransport,
    },
    Camera(PathBuf),
}

impl Source {
    pub fn parse(input: &str, rtsp_latency: Option<u32>, rtsp_transport: Option<RtspTransport>) -> Result<Source> {
        let scheme = input.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        let source = if is_rtsp(input) {
            Source::Rtsp {
                uri: input.to_string(),
                latency_ms: rtsp_latency.unwrap_or(DEFAULT_RTSP_LATENCY_MS),
                transport: rtsp_transport.unwrap_or(RtspTransport::Auto),
            }
        } else if input.starts_with("/dev/video") {
            let dev = PathBuf::from(input);
            if !dev.exists() {
                bail!("no camera at {input}");
            }
            Source::Camera(dev)
        } else if let Some(scheme) = scheme.filter(|s| s != "file") {
            Source::Uri {
                uri: input.to_string(),
                live: LIVE_SCHEMES.contains(&scheme.as_str()),
            }
        } else {
            let path = Path::new(input.strip_prefix("file://").unwrap_or(input));
            if path.is_dir() {
                bail!("{} is a folder: give a video file", path.display());
            }
            if !path.is_file() {
                bail!("no such file: {}", path.display());
            }
            Source::File(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()))
        };
        if !matches!(source, Source::Rtsp { .. }) {
            let given = [
                rtsp_latency.map(|_| "--rtsp-latency"),
                rtsp_transport.map(|_| "--rtsp-transport"),
            ];
            if let Some(option) = given.into_iter().flatten().next() {
                bail!("{option} applies to rtsp:// inputs only, not {input}");
            }
        }
        Ok(source)
    }

    pub fn is_live(&self) -> bool {
        match self {
            Source::Camera(_) | Source::Rtsp { .. } => true,
            Source::Uri { live, .. } => *live,
            Source::File(_) => false,
        }
    }

    /// The source and its decoder, up to raw video. `leaky`: the element drops what it
    /// cannot take, so an RTSP jitter buffer may drop what is older than its latency
    /// too (it would keep it otherwise, without bound, while its decoder lags). With
    /// `name`, the source is named so (its decoder, where separate, `name-dec`): an
    /// error from it or from inside it tells which of several inputs failed.
    pub fn description(&self, name: Option<&str>, leaky: bool) -> String {
        let named = |suffix: &str| name.map(|n| format!(" name={n}{suffix}")).unwrap_or_default();
        let src = named("");
        match self {
            Source::File(p) => format!("uridecodebin{src} uri={}", quote(&format!("file://{}", p.display()))),
            Source::Uri { uri, .. } => format!("uridecodebin{src} uri={}", quote(uri)),
            Source::Rtsp {
                uri,
                latency_ms,
                transport,
            } => format!(
                "rtspsrc{src} location={} latency={latency_ms}{} drop-on-latency={leaky} \
                 ! application/x-rtp,media=video ! decodebin{}",
                quote(uri),
                match transport {
                    RtspTransport::Tcp => " protocols=tcp",
                    RtspTransport::Udp => " protocols=udp+udp-mcast",
                    RtspTransport::Auto => "",
                },
                named("-dec"),
            ),
            Source::Camera(d) => format!("v4l2src{src} device={}", quote(&d.display().to_string())),
        }
    }
}

/// What a run says when
/// [`apply_for_input`](crate::common::ElementOpts::apply_for_input) turned a preset's
/// leaky off for a file.
pub const FILE_NOT_LEAKY: &str = "note: the preset's leaky = true is for live inputs; a file input keeps every \
     frame (--leaky to drop what the model cannot keep up with)";

/// Where the output goes.
pub enum Sink {
    None,
    Screen,
    File(PathBuf, &'static str),
}

impl Sink {
    pub fn parse(output: Option<&str>) -> Result<Sink> {
        match output {
            None => Ok(Sink::None),
            Some("screen") => Ok(Sink::Screen),
            Some(o) => Sink::file(o).map_err(|_| anyhow!("output {o}: give an .mp4 or .mkv file, or `screen`")),
        }
    }

    /// Checked before the pipeline starts: the screen needs a display to show a window
    /// on. With neither X11 nor Wayland (DISPLAY and WAYLAND_DISPLAY unset: a server, an
    /// SSH session without X forwarding) autovideosink has no window to open, and on
    /// some systems one of the sinks it tries then crashes the process.
    pub fn check_display(&self) -> Result<()> {
        let set = |v: &str| std::env::var_os(v).is_some_and(|d| !d.is_empty());
        if matches!(self, Sink::Screen) && !set("DISPLAY") && !set("WAYLAND_DISPLAY") {
            bail!(
                "-o screen: no display (DISPLAY and WAYLAND_DISPLAY are unset); write a file instead, \
                 such as -o out.mp4"
            );
        }
        Ok(())
    }

    /// An .mp4 (or .mov) or .mkv file.
    pub fn file(o: &str) -> Result<Sink> {
        let path = PathBuf::from(o);
        let mux = match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("mp4") | Some("mov") => "mp4mux",
            Some("mkv") => "matroskamux",
            _ => bail!("{o}: give an .mp4 or .mkv file"),
        };
        Ok(Sink::File(path, mux))
    }

    /// On a live input, the screen shows each frame as it comes (sync=false) rather
    /// than dropping those that come later than the latency it was told. A file's muxer
    /// is named `mux`, to watch it with [`OutputFile::watch`].
    pub fn description(&self, bitrate: u32, live: bool, mux_name: &str) -> String {
        match self {
            Sink::None => "fakesink sync=false".into(),
            Sink::Screen => format!("videoconvert ! autovideosink{}", if live { " sync=false" } else { "" }),
            Sink::File(p, mux) => common::h264_file_as(p, mux, mux_name, bitrate, live),
        }
    }
}

/// Where the class maps go (`--mask-output`).
pub enum MaskSink {
    /// One lossless FFV1 stream in Matroska.
    Mkv(PathBuf),
    /// One PNG per frame, named by a printf pattern.
    Png(PathBuf),
}

impl MaskSink {
    pub fn parse(mask: &str) -> Result<MaskSink> {
        let path = PathBuf::from(mask);
        if mask.ends_with(".mkv") {
            Ok(MaskSink::Mkv(path))
        } else if mask.ends_with(".png") && mask.contains('%') {
            Ok(MaskSink::Png(path))
        } else {
            bail!("--mask-output {mask}: give a PNG pattern such as masks/%05d.png, or an .mkv file")
        }
    }

    /// The class-map branch, linked from the element's `mask` pad. Its sink, as the
    /// main output's, takes no part in preroll (see [`common::file_sink`]), so this
    /// branch needs no more than the usual queue whatever the other output's encoder
    /// holds. `element` names the element, `writer` the element that writes the maps
    /// (the muxer, or multifilesink), to watch it with [`MaskSink::watch`].
    pub fn description(&self, element: &str, writer: &str) -> String {
        let q = common::queue();
        match self {
            MaskSink::Mkv(p) => format!(
                "{element}.mask ! {q} ! avenc_ffv1 ! matroskamux name={writer} ! {}",
                common::file_sink(p)
            ),
            MaskSink::Png(p) => format!(
                "{element}.mask ! {q} ! pngenc compression-level=1 ! multifilesink name={writer} location={} async=false",
                quote(&p.display().to_string())
            ),
        }
    }

    pub fn watch(&self, pipeline: &gst::Pipeline, writer: &str) -> Result<OutputFile> {
        match self {
            MaskSink::Mkv(p) => OutputFile::watch(pipeline, writer, p, false),
            MaskSink::Png(p) => OutputFile::watch(pipeline, writer, p, true),
        }
    }
}

/// Checks the files a run writes before anything starts: their folders exist, and no
/// two of them, nor one of them and an input, are the same file (an input may be read
/// twice). `sinks` and `masks` come with the option that names each ("-o",
/// "--outputs (stream 1)"). Returns the input and output files, for the `--json`
/// report's check ([`common::check_report_path`]).
pub fn check_outputs(
    sources: &[Source],
    sinks: &[(String, &Sink)],
    masks: &[(String, &MaskSink)],
) -> Result<Vec<(String, PathBuf)>> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for source in sources {
        if let Source::File(p) = source {
            if !files.iter().any(|(_, f)| common::same_file(f, p)) {
                files.push((format!("the input {}", p.display()), p.clone()));
            }
        }
    }
    for (option, sink) in sinks {
        if let Sink::File(p, _) = sink {
            files.push((format!("{option} {}", p.display()), common::check_output(p)?));
        }
    }
    for (option, mask) in masks {
        match mask {
            MaskSink::Mkv(p) => files.push((format!("{option} {}", p.display()), common::check_output(p)?)),
            MaskSink::Png(p) => {
                common::check_output(p)?;
            }
        }
    }
    common::check_distinct(&files)?;
    Ok(files)
}

/// The stream number in an option's per-stream pattern (`out/cam{}.mp4`).
pub const STREAM_MARK: &str = "{}";

/// A per-stream pattern for `n` streams: `pattern` with [`STREAM_MARK`] replaced by each
/// stream's number (from 0); an error naming `option` when it has no mark and `n` > 1
/// (every stream would write the same file).
pub fn per_stream(option: &str, pattern: &str, n: usize, example: &str) -> Result<Vec<String>> {
    if n > 1 && !pattern.contains(STREAM_MARK) {
        bail!(
            "{option} {pattern}: with {n} inputs, give a pattern with {STREAM_MARK} for the stream number, \
             such as {example}"
        );
    }
    Ok((0..n).map(|i| pattern.replace(STREAM_MARK, &i.to_string())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_stream_patterns_need_the_mark_for_several_streams() {
        assert_eq!(
            per_stream("--outputs", "out/cam{}.mp4", 3, "x").unwrap(),
            ["out/cam0.mp4", "out/cam1.mp4", "out/cam2.mp4"]
        );
        assert_eq!(per_stream("--mask-output", "m.mkv", 1, "x").unwrap(), ["m.mkv"]);
        let e = per_stream("--mask-output", "m.mkv", 2, "m{}.mkv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("with 2 inputs") && e.contains("m{}.mkv"), "{e}");
    }
}
