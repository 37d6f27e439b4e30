//! Pieces of gst-launch descriptions: quoting, the queue that starts a branch, and
//! file outputs (H.264 and plain file sinks).
use std::path::{Path, PathBuf};

/// Builds a pipeline from a gst-launch description, with the H.264 size step of
/// [`EVEN`] set up.
pub fn parse_pipeline(desc: &str) -> anyhow::Result<gst::Pipeline> {
    parse_pipeline_as(desc, "the pipeline")
}

/// [`parse_pipeline`], the error naming the pipeline (`what`).
pub fn parse_pipeline_as(desc: &str, what: &str) -> anyhow::Result<gst::Pipeline> {
    use anyhow::Context;
    use gst::prelude::*;
    let pipeline = gst::parse::launch(desc)
        .with_context(|| format!("cannot build {what} (is a GStreamer plugin missing?)"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow::anyhow!("not a pipeline: {desc}"))?;
    even_sizes(&pipeline);
    Ok(pipeline)
}

/// The suffix of the `videobox` before an H.264 encoder that pads a frame of odd width
/// or height by one black column (right) or row (bottom): x264 in 4:2:0 takes even
/// sizes only. With an even size it passes the frames through untouched. A `videocrop`
/// of the same stem with [`UNEVEN`] after the decoder (eval's codec round trip) takes
/// the padding off again.
pub const EVEN: &str = "_even";
/// See [`EVEN`].
pub const UNEVEN: &str = "_uneven";

/// Sets the padding of every [`EVEN`] `videobox` of `pipeline` (and the cropping of its
/// [`UNEVEN`] `videocrop`) from the caps each gets, and says so once when it pads.
fn even_sizes(pipeline: &gst::Pipeline) {
    use gst::prelude::*;
    let boxes = pipeline
        .iterate_recurse()
        .into_iter()
        .flatten()
        .filter(|e| e.name().ends_with(EVEN));
    for pad_box in boxes {
        let stem = pad_box.name().trim_end_matches(EVEN).to_string();
        let crop = pipeline.by_name(&format!("{stem}{UNEVEN}"));
        let Some(sink) = pad_box.static_pad("sink") else {
            continue;
        };
        let told = std::sync::atomic::AtomicBool::new(false);
        let boxed = pad_box.downgrade();
        sink.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
            let Some(gst::PadProbeData::Event(event)) = &info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let gst::EventView::Caps(caps) = event.view() else {
                return gst::PadProbeReturn::Ok;
            };
            let (Ok(video), Some(pad_box)) = (gst_video::VideoInfo::from_caps(caps.caps()), boxed.upgrade()) else {
                return gst::PadProbeReturn::Ok;
            };
            let (w, h) = (video.width(), video.height());
            let (right, bottom) = ((w % 2) as i32, (h % 2) as i32);
            // videobox: a negative border adds that many pixels.
            pad_box.set_property("right", -right);
            pad_box.set_property("bottom", -bottom);
            if let Some(crop) = &crop {
                crop.set_property("right", right);
                crop.set_property("bottom", bottom);
            }
            if (right, bottom) != (0, 0) && crop.is_none() && !told.swap(true, std::sync::atomic::Ordering::Relaxed) {
                let (added, at) = match (right, bottom) {
                    (1, 1) => ("column and row", "right and bottom"),
                    (1, _) => ("column", "right"),
                    _ => ("row", "bottom"),
                };
                eprintln!(
                    "note: {w}x{h} frames: H.264 needs an even width and height, so the video output is {}x{} \
                     (a black {added} at the {at})",
                    w + right as u32,
                    h + bottom as u32,
                );
            }
            gst::PadProbeReturn::Ok
        });
    }
}

/// Quotes a value for a gst-launch pipeline description.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The highest H.264 bitrate x264enc takes, in kbit/s (its `bitrate` property's range).
pub const MAX_H264_KBPS: i64 = 2_048_000;

/// Frames a branch queue holds: enough for each branch to run in its own thread at
/// its own pace, few enough that the model paces the pipeline.
pub const QUEUE_FRAMES: u32 = 4;

/// The queue that starts a branch (see [`QUEUE_FRAMES`]).
pub fn queue() -> String {
    format!("queue max-size-buffers={QUEUE_FRAMES}")
}

/// A sink that writes a file, for the end of a gst-launch description.
///
/// It takes no part in preroll (`async=false`): it has nothing to render in time, and
/// an encoder keeps frames before its first output (x264enc's lookahead and frame
/// threads hold tens of frames, more with more cores). A file sink that waited for
/// that frame would hold the pipeline in PAUSED while every other sink (appsinks, a
/// second file, the screen) blocked its branch on its own first frame; their queues
/// would fill and stop the tee feeding them all, and the pipeline would never start.
///
/// [`OutputFile::watch`](super::OutputFile::watch) points it at [`partial_path`] of
/// `path` and moves that onto `path` when the first frame comes: a run that fails
/// before its first frame leaves a file that was there as it was. (The description
/// names `path` itself, so that a pipeline printed with `--print-pipeline` writes it.)
pub fn file_sink(path: &Path) -> String {
    format!("filesink location={} async=false", quote(&path.display().to_string()))
}

/// Where a file output is written until it holds a frame: `.NAME.PID.partial` beside
/// the file that writing `path` writes (its symbolic links followed, so that moving it
/// into place writes through them as writing `path` would).
pub fn partial_path(path: &Path) -> PathBuf {
    let target = super::write_target(path).unwrap_or_else(|_| path.to_path_buf());
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// The name of the muxer in [`h264_file`], to watch it with [`OutputFile::watch`](super::OutputFile::watch).
pub const H264_MUX: &str = "h264_mux";

/// An H.264 file output from raw video: `videobox ! videoconvert ! x264enc ! h264parse
/// ! MUX !` [`file_sink`], the muxer named [`H264_MUX`], an odd size padded (see
/// [`EVEN`]). `low_latency` (live inputs) turns
/// off x264enc's lookahead and B-frames.
pub fn h264_file(path: &Path, mux: &str, bitrate: u32, low_latency: bool) -> String {
    h264_file_as(path, mux, H264_MUX, bitrate, low_latency)
}

/// [`h264_file`] with the muxer named `name`: one of several file outputs of a pipeline.
pub fn h264_file_as(path: &Path, mux: &str, name: &str, bitrate: u32, low_latency: bool) -> String {
    format!(
        "videobox name={name}{EVEN} ! videoconvert ! video/x-raw,format=I420 \
         ! x264enc bitrate={bitrate} speed-preset=veryfast{} ! h264parse ! {mux} name={name} ! {}",
        if low_latency { " tune=zerolatency" } else { "" },
        file_sink(path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_values_are_quoted() {
        assert_eq!(quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
