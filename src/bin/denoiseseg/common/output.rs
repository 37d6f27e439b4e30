//! What a command writes, checked before anything runs (paths, sizes, the JSON
//! report), and the report printed or written at the end.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Parses WIDTHxHEIGHT (each 8..=8192), as the commands' size options take it.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', 'X']).ok_or("expected WIDTHxHEIGHT, e.g. 1024x512")?;
    let w: u32 = w.trim().parse().map_err(|_| format!("bad width '{w}'"))?;
    let h: u32 = h.trim().parse().map_err(|_| format!("bad height '{h}'"))?;
    if !(8..=8192).contains(&w) || !(8..=8192).contains(&h) {
        return Err(format!("{w}x{h} is outside 8x8 .. 8192x8192"));
    }
    Ok((w, h))
}

/// Checks a file that a command will write, before anything runs: its folder must
/// exist (nothing is created, as ffmpeg does) and be writable, and the path must not
/// be a folder. `path` may be a pattern (masks/%05d.png): its folder is checked the
/// same way. Returns the file that will be written, resolved (symbolic links, a
/// dangling one too, `.` and `..`; see [`write_target`]), to compare outputs with
/// [`check_distinct`].
pub fn check_output(path: &Path) -> Result<PathBuf> {
    let shown = path.display();
    let dir = folder_of(path);
    if path.file_name().is_none() {
        bail!("cannot write {shown}: it names no file");
    }
    if !dir.exists() {
        bail!("cannot write {shown}: folder {} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!("cannot write {shown}: {} is not a folder", dir.display());
    }
    if path.is_dir() {
        bail!("cannot write {shown}: it is a folder");
    }
    let target = write_target(path).with_context(|| format!("cannot write {shown}"))?;
    let target_dir = folder_of(&target);
    if !writable(target_dir) {
        bail!("cannot write {shown}: folder {} is not writable", target_dir.display());
    }
    Ok(target)
}

fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The file that writing `path` writes: the path itself with its folder resolved, or,
/// where `path` is a symbolic link (to an existing file or to none yet), what it points
/// to, followed as the kernel would (at most 40 links).
pub fn write_target(path: &Path) -> Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        let name = path.file_name().context("it names no file")?.to_owned();
        let dir = folder_of(&path).canonicalize()?;
        let here = dir.join(&name);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => path = dir.join(std::fs::read_link(&here)?),
            _ => return Ok(here),
        }
    }
    bail!("too many levels of symbolic links")
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(dir.as_os_str().as_bytes())
        // SAFETY: access(2) reads the NUL-terminated path and nothing else.
        .is_ok_and(|c| unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
}

/// What makes two paths one file: the device and inode of a file that exists (so hard
/// links are one file too), else the resolved path it will be created at.
#[derive(PartialEq, Eq)]
enum FileId {
    Inode(u64, u64),
    Path(PathBuf),
}

fn file_id(path: &Path) -> FileId {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => FileId::Inode(m.dev(), m.ino()),
        Err(_) => FileId::Path(write_target(path).unwrap_or_else(|_| path.to_path_buf())),
    }
}

/// The files a command reads, named for [`check_report_path`]: those of `paths` that
/// exist ("the input clip.mp4").
pub fn inputs_named<'a>(paths: impl IntoIterator<Item = (&'a str, &'a Path)>) -> Vec<(String, PathBuf)> {
    paths
        .into_iter()
        .filter(|(_, p)| p.exists())
        .map(|(what, p)| (format!("{what} {}", p.display()), p.to_path_buf()))
        .collect()
}

/// Whether `a` and `b` are one file (see [`check_distinct`]).
pub fn same_file(a: &Path, b: &Path) -> bool {
    file_id(a) == file_id(b)
}

/// Fails when two of `files` (what names each, e.g. "-o a.mkv"; its path, resolved by
/// [`check_output`] or canonicalize) are one file, by path or by inode (hard and
/// symbolic links): a pipeline writing one file twice, or over its own input, leaves
/// it corrupt.
pub fn check_distinct(files: &[(String, PathBuf)]) -> Result<()> {
    let ids: Vec<FileId> = files.iter().map(|(_, p)| file_id(p)).collect();
    for (i, (a, _)) in files.iter().enumerate() {
        if let Some(j) = (i + 1..files.len()).find(|&j| ids[j] == ids[i]) {
            bail!("{a} and {} are the same file: give each its own file", files[j].0);
        }
    }
    Ok(())
}

/// H.264 in 4:2:0 (what the file outputs encode) needs an even width and height: a
/// size the user chose is checked here rather than failing in x264enc.
pub fn check_h264_size(option: &str, (w, h): (u32, u32)) -> Result<()> {
    if w % 2 == 1 || h % 2 == 1 {
        bail!("{option} {w}x{h}: the H.264 output needs an even width and height");
    }
    Ok(())
}

/// Checks a `--json FILE` before the command runs (see [`check_output`]), and that it
/// is none of `others`, the files the command reads or writes (as [`check_distinct`]
/// takes them); `-` is standard output.
pub fn check_report_path(json: Option<&Path>, others: &[(String, PathBuf)]) -> Result<()> {
    match json {
        Some(path) if path != Path::new("-") => {
            let mut files = others.to_vec();
            let target = check_output(path)?;
            files.push((format!("--json {}", path.display()), target.clone()));
            check_distinct(&files)?;
            // The report is written at the end: try the file now, so that a place no file
            // can be made in (/proc, a read-only mount, as root too) fails before the
            // measurement. A file that is there is opened without being changed; one that
            // is not is made and removed again.
            let tried = if target.exists() {
                std::fs::OpenOptions::new().append(true).open(&target).map(drop)
            } else {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .and_then(|_| std::fs::remove_file(&target))
            };
            tried.with_context(|| format!("cannot write --json {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Prints a command's table and JSON report: `--json -` puts the JSON alone on
/// standard output (the table goes to standard error), `--json FILE` writes it there.
pub fn emit_report(table: &str, report: &serde_json::Value, json: Option<&Path>) -> Result<()> {
    let table = table.trim_end();
    match json {
        Some(path) if path == Path::new("-") => {
            eprintln!("{table}");
            println!("{}", serde_json::to_string_pretty(report)?);
        }
        Some(path) => {
            println!("{table}");
            std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => println!("{table}"),
    }
    Ok(())
}

/// Seconds as a duration for display.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_within_range() {
        assert_eq!(parse_size("1024x512"), Ok((1024, 512)));
        assert_eq!(parse_size("64X32"), Ok((64, 32)));
        assert!(parse_size("1024").is_err());
        assert!(parse_size("0x512").unwrap_err().contains("outside 8x8"));
        assert!(parse_size("ax5").unwrap_err().contains("bad width"));
    }
}
