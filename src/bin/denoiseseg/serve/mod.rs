//! `denoiseseg serve`: a long-running service that runs streams added and removed over
//! HTTP, every stream's element on one shared engine (`model-instance-id`: one ONNX
//! Runtime session and one inference thread, batches filled from all streams).
//!
//! Files: `spec` (a stream as asked for, checked, and its pipeline's description),
//! `streams` (the streams' registry and statuses), `watcher` (a stream's thread: its
//! pipelines, reconnection, figures, finalizing), `api` (the HTTP routes) and
//! `metrics` (Prometheus text).
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::common::{self, ElementOpts};

mod api;
mod metrics;
mod spec;
mod streams;
mod watcher;

use spec::StreamSpec;
use streams::{Registry, Settings};

const EXAMPLES: &str = "\
Examples:
  denoiseseg serve --port 8080 --provider cpu
  denoiseseg serve --config streams.toml --preset configs/cpu-realtime.toml
  curl -X POST localhost:8080/streams -d '{\"uri\": \"rtsp://cam/stream\", \"output\": \"rec.mp4\"}'
  curl localhost:8080/streams        curl localhost:8080/metrics
  curl -X DELETE localhost:8080/streams/1
The first line on standard output is `listening on http://ADDRESS:PORT` (--port 0 picks a
free port). Streams: POST /streams {\"uri\", \"output\", \"mask_output\", \"view\", \"size\", \"reconnect\"};
uri is a file, file://, rtsp://, http(s)://, udp://, /dev/videoN or
videotestsrc://?pattern=ball&num-buffers=100&width=64&height=32&framerate=25/1&is-live=true.
Live inputs (rtsp, udp, srt, rtmp, cameras) run leaky and reconnect after an error or their
end, waiting 1 s, doubling to 30 s; each reconnection writes NAME.N.EXT. Ctrl-C or SIGTERM
stops every stream (outputs finalized) and exits; a second one aborts.
--config FILE.toml starts the streams it lists ([[stream]] uri = ..., output = ...); the
element's property preset is --preset.";

/// The service's own options.
#[derive(clap::Args, Debug)]
pub struct Service {
    /// TCP port (0: any free port, printed on the first line)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on (0.0.0.0: every interface)
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Streams to start at launch: [[stream]] tables with uri, output, mask_output, view, size, reconnect
    #[arg(long = "config", id = "streams_config", value_name = "STREAMS.toml")]
    pub streams: Option<PathBuf>,
    /// The model-instance-id every stream's element shares (one session, one inference thread)
    #[arg(long, default_value = "serve", value_name = "ID")]
    pub engine_id: String,
    /// H.264 bitrate of video outputs in kbit/s
    #[arg(long, value_name = "KBPS", default_value_t = 4000,
          value_parser = clap::value_parser!(u32).range(1..=common::MAX_H264_KBPS))]
    pub bitrate: u32,
    /// Longest wait, in seconds, for a stopping stream to finalize its files (1-3600)
    #[arg(long, value_name = "S", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub stop_timeout: u64,
}

/// `serve`'s options: the service's, and the element's as `run` has them, but for the
/// element's preset, `--preset` here (`--config` is the streams file).
#[derive(Debug)]
pub struct Args {
    pub service: Service,
    pub element: ElementOpts,
}

/// The element options' `--config`, renamed `--preset`.
fn preset_option(cmd: clap::Command) -> clap::Command {
    cmd.mut_arg("config", |a| {
        a.long("preset")
            .help("Property preset (TOML, see configs/) for every stream's element, applied before the other options")
    })
    .after_help(EXAMPLES)
}

impl clap::FromArgMatches for Args {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Ok(Args {
            service: Service::from_arg_matches(m)?,
            element: ElementOpts::from_arg_matches(m)?,
        })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.service.update_from_arg_matches(m)?;
        self.element.update_from_arg_matches(m)
    }
}

impl clap::Args for Args {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        Service::augment_args(preset_option(ElementOpts::augment_args(cmd)))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Service::augment_args_for_update(preset_option(ElementOpts::augment_args_for_update(cmd)))
    }
}

/// The streams file: `[[stream]]` tables.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct StreamsFile {
    #[serde(default)]
    stream: Vec<StreamSpec>,
}

fn load_streams(path: &Path) -> Result<Vec<StreamSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: StreamsFile = toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
    Ok(file.stream)
}

pub fn main(args: Args, verbose: u8) -> Result<ExitCode> {
    if args.service.engine_id.is_empty() {
        bail!("--engine-id is empty: the streams would not share one engine");
    }
    let specs = args
        .service
        .streams
        .as_deref()
        .map(load_streams)
        .transpose()?
        .unwrap_or_default();
    common::init_gstreamer()?;
    // The element's options, checked once before anything listens.
    args.element.check()?;
    let model = denoiseseg::model::ModelSpec::load(&args.element.model_path()?)?;
    let registry = Arc::new(Registry::new(Settings {
        element: args.element,
        engine_id: args.service.engine_id,
        segments: model.segments(),
        bitrate: args.service.bitrate,
        stop_timeout: Duration::from_secs(args.service.stop_timeout),
        verbose: verbose > 0,
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let addr = SocketAddr::new(args.service.bind, args.service.port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr}"))?;
    // The config's streams once the port is ours, before the first client can come.
    let served = start_streams(&registry, specs).and_then(|()| runtime.block_on(serve(listener, registry.clone())));
    // A second Ctrl-C or SIGTERM while the streams finish aborts.
    runtime.spawn(async {
        shutdown_signal().await;
        eprintln!("aborted: outputs may not be finalized");
        std::process::exit(130);
    });
    stop_all(&registry);
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Starts the config's streams. Every entry is checked first, each against the files
/// of those before it: a bad entry stops the launch with an error naming it before any
/// stream has started (one started and stopped again could have replaced a file).
fn start_streams(registry: &Arc<Registry>, specs: Vec<StreamSpec>) -> Result<()> {
    let mut taken = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let plan = spec::Plan::check(spec, registry.settings.segments, &taken)
            .with_context(|| format!("config: stream {}", i + 1))?;
        taken.extend(plan.files(&(i + 1).to_string()));
    }
    for (i, spec) in specs.into_iter().enumerate() {
        registry
            .add(spec)
            .map_err(|e| e.error.context(format!("config: stream {}", i + 1)))?;
    }
    Ok(())
}

/// Stops every stream at once, each finalizing its outputs, and says what became of
/// their files.
fn stop_all(registry: &Registry) {
    let streams = registry.take_all();
    if !streams.is_empty() {
        eprintln!("stopping {} streams", streams.len());
    }
    let stoppers: Vec<_> = streams
        .into_iter()
        .map(|s| std::thread::spawn(move || s.stop_and_join()))
        .collect();
    for t in stoppers {
        if let Ok(status) = t.join() {
            for f in status.files {
                eprintln!("stream {}: {f}", status.id);
            }
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>) -> Result<()> {
    let bound = listener.local_addr().context("the bound address")?;
    // The first line on standard output: what a client (or a test) connects to.
    println!("listening on http://{bound}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    axum::serve(listener, api::router(registry))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    eprintln!("shutting down");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = term => {}
    }
}
