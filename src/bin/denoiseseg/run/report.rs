//! The end of a run: each stream's frames, drops and files, the engine's figures from
//! the elements' `stats`, as text on standard error and as JSON (`--json`).
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use gst::prelude::*;
use serde_json::{json, Value};

use crate::common::{self, Ending, OutputFile};

/// One stream's figures.
pub struct StreamFigures {
    pub input: String,
    pub frames: u64,
    pub dropped: u64,
    /// What became of each file it wrote ([`OutputFile::conclude`]), and the file.
    pub files: Vec<(String, FileFigures)>,
    /// The error its input ended with, when it failed (with several inputs, the others
    /// went on).
    pub error: Option<anyhow::Error>,
}

/// A file a run wrote: its path and the frames that went into it.
pub struct FileFigures {
    pub path: String,
    pub frames: u64,
}

impl FileFigures {
    fn json(&self) -> Value {
        json!({ "path": self.path, "frames": self.frames })
    }
}

/// Concludes each file (see [`OutputFile::conclude`]): what became of it, and its figures.
pub fn conclude(outputs: &[OutputFile], ending: Ending) -> Vec<(String, FileFigures)> {
    outputs
        .iter()
        .map(|o| {
            let figures = FileFigures {
                path: o.path().display().to_string(),
                frames: o.frames(),
            };
            (o.conclude(ending), figures)
        })
        .collect()
}

impl StreamFigures {
    /// The figures of the stream whose chain ends in `element` (and starts in `first`
    /// when a segmenter is chained: both elements' drops count).
    pub fn of(
        input: &str,
        element: &gst::Element,
        first: Option<&gst::Element>,
        files: Vec<(String, FileFigures)>,
    ) -> Self {
        let dropped = |e: &gst::Element| e.property::<u64>("frames-dropped");
        StreamFigures {
            input: input.to_string(),
            frames: element.property::<u64>("frames-processed"),
            dropped: dropped(element) + first.map_or(0, dropped),
            files,
            error: None,
        }
    }
}

/// The engine the elements ran on, from their `stats` after the run.
pub struct EngineFigures {
    /// The model-instance-id they shared it under (none: a private engine).
    pub id: Option<String>,
    /// Elements on the engine: the most any of them saw (as each leaves at the end,
    /// those left see fewer).
    pub streams: u64,
    /// Frames per model run, from all streams.
    pub mean_batch_frames: f64,
    pub batch_size: u32,
    pub provider: String,
}

impl EngineFigures {
    /// The figures of `elements`' engine; its id is the one they ran under.
    pub fn of(elements: &[gst::Element]) -> Self {
        let id = elements
            .first()
            .map(|e| e.property::<Option<String>>("model-instance-id").unwrap_or_default())
            .filter(|id| !id.is_empty());
        let stats: Vec<gst::Structure> = elements.iter().map(|e| e.property::<gst::Structure>("stats")).collect();
        let streams = stats.iter().filter_map(|s| s.get::<u64>("engine-streams").ok()).max();
        let mean_batch_frames = stats
            .iter()
            .filter_map(|s| s.get::<f64>("mean-batch-frames").ok())
            .fold(0.0, f64::max);
        EngineFigures {
            id,
            streams: streams.unwrap_or(0),
            mean_batch_frames,
            batch_size: elements.first().map_or(0, |e| e.property::<u32>("batch-size")),
            provider: elements
                .first()
                .map(|e| e.property::<String>("provider"))
                .unwrap_or_default(),
        }
    }
}

/// What a run did, to print and to write as JSON.
pub struct Report {
    pub streams: Vec<StreamFigures>,
    /// The grid mosaic of several inputs (`-o`), when written to a file.
    pub mosaic: Option<(String, FileFigures)>,
    pub engine: EngineFigures,
    pub model: String,
    pub elapsed: Duration,
    pub ending: Ending,
}

impl Report {
    fn frames(&self) -> u64 {
        self.streams.iter().map(|s| s.frames).sum()
    }

    fn dropped(&self) -> u64 {
        self.streams.iter().map(|s| s.dropped).sum()
    }

    /// The streams that failed.
    fn failed(&self) -> Vec<usize> {
        (self.streams.iter().enumerate())
            .filter_map(|(i, s)| s.error.as_ref().map(|_| i))
            .collect()
    }

    fn fps(&self) -> f64 {
        self.frames() as f64 / self.elapsed.as_secs_f64().max(1e-3)
    }

    /// "Finalized" only when every file got frames and EOS went through its muxer.
    fn ending_text(&self) -> &'static str {
        let mut files = self
            .streams
            .iter()
            .flat_map(|s| &s.files)
            .chain(&self.mosaic)
            .peekable();
        let finalized = files.peek().is_some() && files.all(|(_, f)| f.frames > 0);
        match self.ending {
            Ending::Interrupted if finalized => ", interrupted (outputs finalized)",
            Ending::Interrupted => ", interrupted",
            Ending::Aborted => ", aborted (outputs may be unplayable)",
            Ending::Eos | Ending::BeforeFirstFrame => "",
        }
    }

    /// Ends the run: says what was written (one line per stream and one for the
    /// whole run with several), writes the JSON report, and gives the exit code (130
    /// when interrupted before the first frame or aborted); an error when the input
    /// gave no frame, or when a stream failed (after the report: the others went on),
    /// naming its input.
    pub fn finish(mut self, json: Option<&Path>) -> Result<ExitCode> {
        let failed = self.failed();
        match self.ending {
            Ending::BeforeFirstFrame => {
                eprintln!("{}", common::STOPPED_EARLY);
                return Ok(ExitCode::from(130));
            }
            Ending::Eos if self.frames() == 0 && failed.is_empty() => {
                bail!("no frames came through the pipeline: no output written")
            }
            _ => {}
        }
        if self.streams.len() > 1 {
            self.print_streams();
        } else {
            self.print_single();
        }
        self.write_json(json).context("--json")?;
        if self.ending == Ending::Aborted {
            return Ok(ExitCode::from(130));
        }
        if let Some(&i) = failed.first() {
            let s = &mut self.streams[i];
            let error = s.error.take().expect("a failed stream has its error");
            let error = error.context(format!("input {i} ({})", s.input));
            return Err(match failed.len() {
                1 => error,
                n => error.context(format!(
                    "{n} of {} inputs failed (the first below; see the report above)",
                    self.streams.len()
                )),
            });
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The report of one stream, as `run` prints it.
    fn print_single(&self) {
        eprintln!(
            "{} frames in {} ({:.1} frames/s) on {}, {} dropped, model {}{}",
            self.frames(),
            common::secs(self.elapsed),
            self.fps(),
            self.engine.provider,
            self.dropped(),
            self.model,
            self.ending_text()
        );
        self.print_files();
    }

    /// The report of several streams: one line each, then the whole run and its engine.
    fn print_streams(&self) {
        for (i, s) in self.streams.iter().enumerate() {
            let failed = match &s.error {
                Some(e) => format!(", failed: {}", common::error_line(e)),
                None => String::new(),
            };
            eprintln!(
                "stream {i} {}: {} frames, {} dropped{failed}",
                s.input, s.frames, s.dropped
            );
        }
        let e = &self.engine;
        eprintln!(
            "{} frames from {} streams in {} ({:.1} frames/s) on {}, {} dropped, model {}; \
             one engine for {} streams, {:.2} frames per model run (batch-size {}){}",
            self.frames(),
            self.streams.len(),
            common::secs(self.elapsed),
            self.fps(),
            e.provider,
            self.dropped(),
            self.model,
            e.streams,
            e.mean_batch_frames,
            e.batch_size,
            self.ending_text()
        );
        self.print_files();
    }

    fn print_files(&self) {
        for (line, _) in self.mosaic.iter().chain(self.streams.iter().flat_map(|s| &s.files)) {
            eprintln!("{line}");
        }
    }

    pub fn json(&self) -> Value {
        let e = &self.engine;
        json!({
            "streams": self.streams.iter().enumerate().map(|(i, s)| json!({
                "stream": i,
                "input": s.input,
                "frames": s.frames,
                "dropped": s.dropped,
                "outputs": s.files.iter().map(|(_, f)| f.json()).collect::<Vec<_>>(),
                "error": s.error.as_ref().map(common::error_line),
            })).collect::<Vec<_>>(),
            "failed": self.failed(),
            "mosaic": self.mosaic.as_ref().map(|(_, f)| f.json()),
            "frames": self.frames(),
            "dropped": self.dropped(),
            "seconds": self.elapsed.as_secs_f64(),
            "fps": self.fps(),
            "model": self.model,
            "provider": e.provider,
            "engine": {
                "model_instance_id": e.id,
                "engine_streams": e.streams,
                "mean_batch_frames": e.mean_batch_frames,
                "batch_size": e.batch_size,
            },
            "ending": match self.ending {
                Ending::Eos => "eos",
                Ending::Interrupted => "interrupted",
                Ending::BeforeFirstFrame => "before-first-frame",
                Ending::Aborted => "aborted",
            },
        })
    }

    /// Writes the JSON report: `-` to standard output, else to the file (checked
    /// before the run with [`common::check_report_path`]).
    fn write_json(&self, json: Option<&Path>) -> Result<()> {
        let Some(path) = json else { return Ok(()) };
        let text = serde_json::to_string_pretty(&self.json())?;
        if path == Path::new("-") {
            println!("{text}");
            Ok(())
        } else {
            std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
        }
    }
}
