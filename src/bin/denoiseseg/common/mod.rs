//! What every command shares: finding the plugin and the shipped models, the element's
//! options, running a pipeline to its end with progress and Ctrl-C, and pairing frames
//! from several appsinks by timestamp.
//!
//! The files: `setup` (GStreamer, the shipped models, errors), `element` (the element's
//! options), `pipeline` (running a pipeline), `frames` (frames out of appsinks),
//! `launch` (pieces of gst-launch descriptions) and `output` (checking what a command
//! writes, and its report).
mod element;
mod frames;
mod launch;
mod output;
mod pipeline;
mod setup;

pub use element::{scratch_element, set_property_checked, ElementOpts};
pub use frames::{frame_of, FrameSets, RgbFrame};
pub use launch::{
    file_sink, h264_file, h264_file_as, partial_path, queue, quote, H264_MUX, MAX_H264_KBPS, QUEUE_FRAMES,
};
pub use launch::{parse_pipeline, parse_pipeline_as, EVEN, UNEVEN};
pub use output::{
    check_distinct, check_h264_size, check_output, check_report_path, emit_report, inputs_named, parse_size, same_file,
    secs, write_target,
};
pub use pipeline::{
    best_error, error_of, first_error, interrupted, run_pipeline, run_streams_with, stop_at_once, Ending, OnError,
    OutputFile, Progress, STOPPED_EARLY,
};
pub use setup::{error_detail, error_line, init_gstreamer, models_dir, resolve_model, SAMPLE_CLIP, SAMPLE_LABELS};
