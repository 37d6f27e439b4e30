//! What `eval` measures on: the clean frames (a video or a folder of images) and the
//! ground-truth labels (a label video or a folder of label maps).
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use gst::prelude::*;

use crate::common::{self, frame_of, quote, RgbFrame};

/// Where the clean frames come from.
pub(super) enum Source {
    Video(PathBuf),
    Images(Vec<PathBuf>),
}

/// Where the ground truth comes from.
pub(super) enum Labels {
    /// Decoded up front, in order.
    Frames(Vec<RgbFrame>),
    /// One file per frame, decoded when needed.
    Files(Vec<PathBuf>),
}

impl Labels {
    pub(super) fn len(&self) -> usize {
        match self {
            Labels::Frames(f) => f.len(),
            Labels::Files(f) => f.len(),
        }
    }

    pub(super) fn get(&self, i: usize) -> Result<RgbFrame> {
        match self {
            Labels::Frames(f) => f.get(i).cloned().ok_or_else(|| {
                anyhow!(
                    "the labels have {} frames, fewer than the input (frame {} has none)",
                    f.len(),
                    i + 1
                )
            }),
            Labels::Files(f) => {
                let path = f.get(i).ok_or_else(|| {
                    anyhow!(
                        "the labels folder has {} maps, fewer than the input (frame {} has none)",
                        f.len(),
                        i + 1
                    )
                })?;
                decode(path, "GRAY8", None)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| anyhow!("no image decoded from {}", path.display()))
            }
        }
    }
}

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

fn sorted_files(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && keep(p))
        .collect();
    v.sort();
    Ok(v)
}

/// Cityscapes annotation files, which are never clean input images.
fn is_annotation(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    ["_labelTrainIds.png", "_labelIds.png", "_color.png", "_instanceIds.png"]
        .iter()
        .any(|s| name.ends_with(s))
}

pub(super) fn source_of(input: &Path) -> Result<Source> {
    if input.is_dir() {
        let images = sorted_files(input, |p| has_ext(p, &["png", "jpg", "jpeg"]) && !is_annotation(p))?;
        if images.is_empty() {
            bail!("no PNG or JPEG images in the folder {}", input.display());
        }
        Ok(Source::Images(images))
    } else if input.is_file() {
        Ok(Source::Video(input.to_path_buf()))
    } else {
        bail!("no such file or folder: {}", input.display())
    }
}

pub(super) fn labels_of(path: &Path, limit: Option<usize>) -> Result<Labels> {
    if path.is_dir() {
        let mut files = sorted_files(path, |p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("_labelTrainIds.png"))
        })?;
        if files.is_empty() {
            files = sorted_files(path, |p| has_ext(p, &["png"]))?;
        }
        if files.is_empty() {
            bail!(
                "no *_labelTrainIds.png (or PNG) label maps in the folder {}",
                path.display()
            );
        }
        Ok(Labels::Files(files))
    } else if path.is_file() {
        let frames = decode(path, "GRAY8", limit)?;
        if frames.is_empty() {
            bail!("no frames decoded from the labels {}", path.display());
        }
        Ok(Labels::Frames(frames))
    } else {
        bail!("no such labels file or folder: {}", path.display())
    }
}

/// Decodes a video or an image into packed frames of `format` (RGB or GRAY8), the
/// first `limit` only when given.
pub(super) fn decode(path: &Path, format: &str, limit: Option<usize>) -> Result<Vec<RgbFrame>> {
    let desc = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format={format} ! appsink name=out sync=false",
        quote(&path.display().to_string())
    );
    let pipeline = crate::common::parse_pipeline_as(&desc, "the decoding pipeline")?;
    let sink = pipeline
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| anyhow!("no appsink"))?;
    let frames = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(None::<String>));
    {
        let frames = frames.clone();
        let errors = errors.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    match frame_of(&sample) {
                        Ok(f) => frames.lock().unwrap_or_else(|e| e.into_inner()).push(f),
                        Err(e) => {
                            errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e.to_string());
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let result = (|| -> Result<()> {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| anyhow!("cannot decode {}", path.display()))?;
        loop {
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(60)) else {
                bail!("decoding {} stalled", path.display());
            };
            match msg.view() {
                gst::MessageView::Eos(_) => return Ok(()),
                gst::MessageView::Error(e) => {
                    return Err(common::error_of(e).context(format!("cannot decode {}", path.display())));
                }
                _ => {}
            }
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    if let Some(e) = errors.lock().unwrap_or_else(|e| e.into_inner()).take() {
        bail!("{}: {e}", path.display());
    }
    let mut frames = std::mem::take(&mut *frames.lock().unwrap_or_else(|e| e.into_inner()));
    if let Some(n) = limit {
        frames.truncate(n);
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_are_not_inputs() {
        assert!(is_annotation(Path::new("a/x_gtFine_labelTrainIds.png")));
        assert!(is_annotation(Path::new("x_gtFine_color.png")));
        assert!(!is_annotation(Path::new("x_leftImg8bit.png")));
        assert!(has_ext(Path::new("a.JPG"), &["jpg"]));
        assert!(!has_ext(Path::new("a.txt"), &["jpg", "png"]));
    }
}
