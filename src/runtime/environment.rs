//! The ONNX Runtime library and the one process-wide environment; the allocator
//! tuning the model runs need.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ort::environment::Environment;
use ort::logging::LogLevel;

use crate::{Error, Result};

/// The ONNX Runtime version the project is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";
/// The library's file name (the versioned soname; never put an unversioned
/// `libonnxruntime.so` in a GStreamer plugin folder).
pub const ORT_LIBRARY_NAME: &str = "libonnxruntime.so.1";

/// Where ONNX Runtime's own log lines go: (level, message). Set once, before the
/// first session, by the embedding application (the plugin forwards it to a
/// GStreamer debug category).
pub type LogSink = Arc<dyn Fn(LogLevel, &str) + Send + Sync>;

static LOG_SINK: OnceLock<LogSink> = OnceLock::new();
static ENV: Mutex<Option<(Environment, PathBuf)>> = Mutex::new(None);

/// Sets where ONNX Runtime logs go; only the first call counts.
pub fn set_log_sink(sink: LogSink) {
    let _ = LOG_SINK.set(sink);
}

/// The candidate library paths, in order: an explicit path, `ORT_DYLIB_PATH`, the
/// library beside `beside` (the plugin's own folder), then the bare soname.
pub fn library_candidates(explicit: Option<&Path>, beside: Option<&Path>) -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        c.push(p.to_path_buf());
        return c; // an explicit choice is the only one tried
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        c.push(PathBuf::from(p));
    }
    if let Some(dir) = beside {
        c.push(dir.join(ORT_LIBRARY_NAME));
    }
    c.push(PathBuf::from(ORT_LIBRARY_NAME));
    c
}

/// Loads ONNX Runtime (first candidate that loads) and creates the process-wide
/// environment, once; later calls return the same environment and the path it came
/// from. A failure is not cached: a later call with other candidates may succeed.
pub fn environment(candidates: &[PathBuf]) -> Result<(Environment, PathBuf)> {
    let mut env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((e, p)) = env.as_ref() {
        return Ok((e.clone(), p.clone()));
    }
    let mut errors = Vec::new();
    for path in candidates {
        let builder = match ort::init_from(path) {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let builder = builder.with_name("denoiseseg").with_telemetry(false);
        let builder = match LOG_SINK.get() {
            Some(sink) => {
                let sink = sink.clone();
                builder.with_logger(Arc::new(move |level, _category, _id, _location, msg| sink(level, msg)))
            }
            None => builder,
        };
        let built = builder.build().map_err(|e| Error::Library(e.to_string()))?;
        *env = Some((built.clone(), path.clone()));
        return Ok((built, path.clone()));
    }
    Err(Error::Library(format!(
        "cannot load ONNX Runtime {ORT_VERSION} ({ORT_LIBRARY_NAME}); tried {}. Run `make setup` \
         (or scripts/setup-ort.sh), or set the element's ort-library property or ORT_DYLIB_PATH",
        if errors.is_empty() {
            "nothing".to_string()
        } else {
            errors.join("; ")
        }
    )))
}

/// Makes glibc keep and reuse the large blocks ONNX Runtime allocates on every run.
///
/// ONNX Runtime's CPU kernels allocate and free activation-sized buffers (a 64-channel
/// 1024x512 float map is 128 MiB) on every run. glibc serves blocks that large with
/// fresh `mmap`s, or, on a thread other than `main`, from per-thread heaps that it
/// shrinks again on free; either way each run pays about 100 000 page faults. Measured
/// with `denoiseseg bench` (1024x512, CPU): one model run took 300 ms on the frame
/// queue's inference thread against 239 ms in a bare loop on `main`; with this
/// tuning, 250 ms against 238 ms. It puts every thread on the main arena, never
/// `mmap`s and never trims, so the process keeps its peak heap instead of handing it
/// back between frames. Call it before the threads that run models start (the element
/// does, before its frame queue; [`load_model`](super::load_model) does too); it acts once per process. `DENOISESEG_KEEP_MALLOC=1` leaves the allocator alone.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("DENOISESEG_KEEP_MALLOC").is_some_and(|v| !v.is_empty() && v != "0") {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's allocation policy; it is thread-safe.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_library_is_the_only_candidate() {
        let c = library_candidates(Some(Path::new("/x/libonnxruntime.so.1")), Some(Path::new("/p")));
        assert_eq!(c, vec![PathBuf::from("/x/libonnxruntime.so.1")]);
        let c = library_candidates(None, Some(Path::new("/p")));
        assert!(c.contains(&PathBuf::from("/p/libonnxruntime.so.1")));
        assert_eq!(c.last().unwrap(), &PathBuf::from(ORT_LIBRARY_NAME));
    }
}
