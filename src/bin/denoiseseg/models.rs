//! `denoiseseg models`: the shipped and given models, each read with ONNX Runtime
//! (CPU) and checked against the model contract: the graph's inputs and outputs, the
//! sidecar, what the engine will do with the model, its classes; for a model brought
//! without a sidecar, a suggested one (the engine's `sidecar::suggest`).
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use denoiseseg::model::{GraphInfo, ModelSpec, TensorDecl};
use denoiseseg::runtime;
use denoiseseg::sidecar::{self, Suggestion};

use crate::common;

/// What `models` says of a shipped segmenter (issue 19), until the shipped models meet
/// the real-street targets: with the real-street figures of its sidecar (written by
/// models/train/card_metrics.py from models/eval-real/) when it has them.
pub fn shipped_note(spec: &ModelSpec) -> String {
    let figure = |k: &str| spec.metrics.get(k).and_then(|v| v.as_float());
    let mine = match (
        figure("real_streets_pixel_accuracy_sigma0"),
        figure("real_streets_miou_sigma0"),
    ) {
        (Some(acc), Some(miou)) => format!(
            "on the project's real street frames (models/eval-real) it gets {:.0} % of the labelled pixels \
             right, mIoU {miou:.2}: it finds the large surfaces (lawns, road, buildings) but mostly misses \
             people, cyclists and close-up vehicles",
            acc * 100.0
        ),
        _ => "its class maps on real streets are mostly wrong".to_string(),
    };
    format!(
        "the shipped segmenter is trained on synthetic scenes (generated streets): {mine}. To segment \
         objects on real footage, bring your own model (README, \"Bring your own model\"): denoiseseg run \
         clip.mp4 --seg-model your-cityscapes-model.onnx"
    )
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "A model without a sidecar gets a suggested one, guessed from its graph; \
                  --write-sidecar saves it beside the model (never over an existing file). \
                  Check its GUESS lines (normalisation, channel order, classes) before use.\n\n\
                  Examples:\n  denoiseseg models\n  denoiseseg models my-model.onnx --classes\n  \
                  denoiseseg models cityscapes.onnx --write-sidecar\n  denoiseseg models --json"
)]
pub struct Args {
    /// Models to check besides the shipped ones (each with its .toml sidecar, or without one
    /// for a suggestion)
    #[arg(value_name = "MODEL.onnx")]
    pub models: Vec<PathBuf>,
    /// List every class with its colour
    #[arg(long)]
    pub classes: bool,
    /// For a given model without a sidecar, write the suggested one beside it (<stem>.toml)
    #[arg(long)]
    pub write_sidecar: bool,
    /// Path of libonnxruntime.so.1 [default: ORT_DYLIB_PATH, then beside the plugin, then the system's]
    #[arg(long, value_name = "FILE")]
    pub ort_library: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

type Graph = (Vec<TensorDecl>, Vec<TensorDecl>);

/// One model's report.
struct Checked {
    path: PathBuf,
    /// The graph's declared inputs and outputs, or why they could not be read.
    graph: Result<Graph, String>,
    /// The sidecar, when there is one and it parses.
    spec: Option<ModelSpec>,
    sidecar_found: bool,
    info: Option<GraphInfo>,
    /// The contract problem, if any.
    problem: Option<String>,
    /// For a model without a sidecar: the suggestion (or why none), and whether it
    /// passes the contract check.
    suggestion: Option<Result<Suggestion, String>>,
    suggestion_check: Option<Result<(), String>>,
    /// `--write-sidecar`: the file written, or why not.
    written: Option<Result<PathBuf, String>>,
    shipped: bool,
}

fn check(path: PathBuf, env: &Result<ort::environment::Environment, String>, write: bool, shipped: bool) -> Checked {
    let graph = match env {
        Ok(env) if path.is_file() => runtime::read_graph(env, &path).map_err(|e| e.to_string()),
        Ok(_) => Err(format!("{}: not a file", path.display())),
        Err(e) => Err(format!("not checked against the graph: {e}")),
    };
    let sidecar_path = path.with_extension("toml");
    let mut c = Checked {
        path,
        graph,
        spec: None,
        sidecar_found: sidecar_path.exists(),
        info: None,
        problem: None,
        suggestion: None,
        suggestion_check: None,
        written: None,
        shipped,
    };
    if write && c.sidecar_found {
        c.written = Some(Err(format!(
            "{} exists; it is never overwritten",
            sidecar_path.display()
        )));
    }
    if !c.sidecar_found && c.path.is_file() {
        if let Err(e) = &c.graph {
            // Not a model at all: that, rather than the missing sidecar, is the news.
            c.problem = Some(format!(
                "not an ONNX model ({e}){}",
                if write { "; no sidecar written" } else { "" }
            ));
            return c;
        }
        if let Ok((inputs, outputs)) = &c.graph {
            let stem = c
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let suggestion = sidecar::suggest(&stem, inputs, outputs);
            if let Ok(s) = &suggestion {
                let checked = ModelSpec::from_sidecar_str(&c.path, &sidecar_path, &s.toml)
                    .and_then(|spec| spec.check_graph(inputs, outputs).map(drop))
                    .map_err(|e| e.to_string());
                if write && checked.is_ok() {
                    c.written = Some(write_new(&sidecar_path, &s.toml));
                } else if write {
                    c.written = Some(Err("the suggestion does not pass the contract check".into()));
                }
                c.suggestion_check = Some(checked);
            } else if write {
                c.written = Some(Err("no sidecar could be suggested".into()));
            }
            c.suggestion = Some(suggestion);
        }
        if !matches!(c.written, Some(Ok(_))) {
            c.problem = Some(format!(
                "no sidecar: {} is missing (the model cannot run without one){}",
                sidecar_path.display(),
                match &c.suggestion {
                    Some(Ok(_)) if !write => "; a suggested one follows (--write-sidecar saves it)",
                    Some(Ok(_)) => "; a suggested one follows",
                    _ => "",
                }
            ));
            return c;
        }
        c.sidecar_found = true;
    }
    match ModelSpec::load(&c.path) {
        Ok(spec) => {
            match &c.graph {
                Ok((inputs, outputs)) => match spec.check_graph(inputs, outputs) {
                    Ok(info) => c.info = Some(info),
                    Err(e) => c.problem = Some(e.to_string()),
                },
                Err(e) => c.problem = Some(e.clone()),
            }
            c.spec = Some(spec);
        }
        Err(e) => c.problem = Some(e.to_string()),
    }
    c
}

/// Writes `text` to `path`, which must not exist yet.
fn write_new(path: &Path, text: &str) -> Result<PathBuf, String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

pub fn main(args: Args, _verbose: u8) -> Result<ExitCode> {
    let dir = common::models_dir();
    let mut paths: Vec<(PathBuf, bool)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
                .map(|p| (p, true))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    let shipped_dir = dir.canonicalize().ok();
    for p in &args.models {
        let in_models = p
            .parent()
            .map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d })
            .and_then(|d| d.canonicalize().ok());
        let shipped = in_models.is_some() && in_models == shipped_dir;
        if !(shipped
            && paths
                .iter()
                .any(|(q, _)| q.canonicalize().ok() == p.canonicalize().ok()))
        {
            paths.push((p.clone(), shipped));
        }
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let candidates = runtime::library_candidates(args.ort_library.as_deref(), beside.as_deref());
    let env = runtime::environment(&candidates)
        .map(|(e, _)| e)
        .map_err(|e| e.to_string());
    // Sidecars are written for the models named on the command line only.
    let checked: Vec<Checked> = paths
        .into_iter()
        .map(|(p, shipped)| check(p, &env, args.write_sidecar && !shipped, shipped))
        .collect();
    let all_ok = checked.iter().all(|c| c.problem.is_none());

    if args.json {
        let list: Vec<serde_json::Value> = checked.iter().map(to_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "models": list }))?
        );
    } else {
        if checked.is_empty() {
            println!("no models in {}", dir.display());
        }
        for c in &checked {
            print_text(c, args.classes);
        }
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_graph(graph: &Result<Graph, String>) {
    let Ok((inputs, outputs)) = graph else { return };
    println!("  graph:");
    let width = inputs.iter().chain(outputs).map(|d| d.name.len()).max().unwrap_or(0);
    for (what, decls) in [("input ", inputs), ("output", outputs)] {
        for d in decls {
            println!("    {what}  {:width$}  {:<8} {}", d.name, d.elem.name(), d.shape());
        }
    }
}

fn print_text(c: &Checked, classes: bool) {
    let verdict = match &c.problem {
        None => "contract OK".to_string(),
        Some(p) => format!("BROKEN: {p}"),
    };
    println!("{}", c.path.display());
    if let Some(s) = &c.spec {
        println!("  {} {} - {}", s.name, s.version, s.kind());
        if !s.description.is_empty() {
            println!("  {}", s.description);
        }
    }
    println!("  {verdict}");
    print_graph(&c.graph);
    let sidecar_path = c.path.with_extension("toml");
    match (&c.written, c.sidecar_found) {
        (Some(Ok(p)), _) => println!("  sidecar: {} (written from the suggestion below)", p.display()),
        (_, true) => println!("  sidecar: {}", sidecar_path.display()),
        (_, false) => println!("  sidecar: none ({} not found)", sidecar_path.display()),
    }
    if let Some(Err(e)) = &c.written {
        println!("  --write-sidecar: not written: {e}");
    }
    if let Some(suggestion) = &c.suggestion {
        print_suggestion(suggestion, c.suggestion_check.as_ref(), &sidecar_path);
    }
    let Some(s) = &c.spec else {
        println!();
        return;
    };
    let sigma = s
        .sigma_input
        .as_deref()
        .map(|n| format!(", {n} (noise sigma)"))
        .unwrap_or_default();
    println!("  inputs:  {} (image){sigma}", s.image_input);
    let outs: Vec<String> = [
        s.denoised_output.as_ref().map(|n| format!("{n} (denoised)")),
        s.labels_output.as_ref().map(|n| format!("{n} (labels)")),
        s.logits_output.as_ref().map(|n| format!("{n} (logits)")),
    ]
    .into_iter()
    .flatten()
    .collect();
    println!("  outputs: {}", outs.join(", "));
    match &c.info {
        Some(info) => {
            println!("  the engine:");
            for line in sidecar::engine_plan(s, info) {
                println!("    {line}");
            }
        }
        None => {
            if let Some([w, h]) = s.input_size {
                println!("  size multiple {}, recommended input {w}x{h}", s.size_multiple);
            } else {
                println!("  size multiple {}", s.size_multiple);
            }
        }
    }
    if !s.license.is_empty() {
        println!("  license: {}", s.license);
    }
    if !s.classes.is_empty() {
        if classes {
            println!("  classes:");
            for k in &s.classes {
                let [r, g, b] = k.color;
                let swatch = if std::io::stdout().is_terminal() {
                    format!("\x1b[48;2;{r};{g};{b}m  \x1b[0m ")
                } else {
                    String::new()
                };
                println!("    {:>3}  {swatch}#{r:02x}{g:02x}{b:02x}  {}", k.id, k.name);
            }
        } else {
            let names: Vec<&str> = s.classes.iter().map(|k| k.name.as_str()).collect();
            println!("  {} classes: {}", names.len(), names.join(", "));
        }
    }
    if c.shipped && s.segments() {
        println!("  note: {}", shipped_note(s));
    }
    println!();
}

fn print_suggestion(s: &Result<Suggestion, String>, check: Option<&Result<(), String>>, path: &Path) {
    match s {
        Err(e) => println!("  no sidecar can be suggested: {e}"),
        Ok(s) => {
            match check {
                Some(Ok(())) => println!(
                    "  suggested sidecar (save as {}; it passes the contract check against the graph); to check:",
                    path.display()
                ),
                Some(Err(e)) => println!(
                    "  suggested sidecar (save as {}; it does NOT pass the contract check: {e}); to check:",
                    path.display()
                ),
                None => println!("  suggested sidecar (save as {}); to check:", path.display()),
            }
            for n in &s.notes {
                println!("    - {n}");
            }
            println!("---- {} ----", path.display());
            print!("{}", s.toml);
            println!("---- end ----");
        }
    }
}

fn decls_json(decls: &[TensorDecl]) -> serde_json::Value {
    decls
        .iter()
        .map(|d| {
            serde_json::json!({
                "name": d.name,
                "dtype": d.elem.name(),
                "shape": d.dims,
            })
        })
        .collect()
}

fn to_json(c: &Checked) -> serde_json::Value {
    let sidecar_path = c.path.with_extension("toml");
    let mut v = serde_json::json!({
        "path": c.path.display().to_string(),
        "ok": c.problem.is_none(),
        "problem": c.problem,
        "sidecar": c.sidecar_found.then(|| sidecar_path.display().to_string()),
    });
    match &c.graph {
        Ok((inputs, outputs)) => {
            v["graph"] = serde_json::json!({ "inputs": decls_json(inputs), "outputs": decls_json(outputs) });
        }
        Err(e) => v["graph_error"] = e.clone().into(),
    }
    if let Some(s) = &c.spec {
        v["name"] = s.name.clone().into();
        v["version"] = s.version.clone().into();
        v["kind"] = s.kind().into();
        v["size_multiple"] = s.size_multiple.into();
        v["inputs"] = serde_json::json!({ "image": s.image_input, "sigma": s.sigma_input });
        v["outputs"] = serde_json::json!({
            "denoised": s.denoised_output, "labels": s.labels_output, "logits": s.logits_output
        });
        v["classes"] = s
            .classes
            .iter()
            .map(|k| serde_json::json!({ "id": k.id, "name": k.name, "color": k.color }))
            .collect();
        if let Some(info) = &c.info {
            let p = &s.preprocess;
            v["engine"] = serde_json::json!({
                "layout": p.layout.name(),
                "channels": match p.channels {
                    denoiseseg::preprocess::ChannelOrder::Rgb => "rgb",
                    denoiseseg::preprocess::ChannelOrder::Bgr => "bgr",
                },
                "scale": p.scale,
                "mean": p.mean,
                "std": p.std,
                "fixed_size": info.fixed_size.map(|(w, h)| [w, h]),
                "resize": info.fixed_size.map(|_| match p.resize {
                    denoiseseg::preprocess::Resize::Stretch => "stretch",
                    denoiseseg::preprocess::Resize::Letterbox => "letterbox",
                }),
                "size_multiple": s.size_multiple,
                "fixed_batch": info.fixed_batch,
                "labels_dtype": s.labels_output.as_ref().map(|_| info.labels_elem.name()),
                "plan": sidecar::engine_plan(s, info),
            });
        }
        if c.shipped && s.segments() {
            v["note"] = shipped_note(s).into();
        }
    }
    match &c.suggestion {
        Some(Ok(s)) => {
            v["suggestion"] = serde_json::json!({
                "sidecar": s.toml,
                "notes": s.notes,
                "passes_check": matches!(c.suggestion_check, Some(Ok(()))),
                "check_problem": c.suggestion_check.as_ref().and_then(|r| r.as_ref().err()),
                "image": s.image,
                "sigma": s.sigma,
                "denoised": s.denoised,
                "labels": s.labels,
                "logits": s.logits,
                "layout": s.layout.name(),
                "fixed_size": s.fixed_size.map(|(w, h)| [w, h]),
            });
        }
        Some(Err(e)) => v["suggestion_error"] = e.clone().into(),
        None => {}
    }
    match &c.written {
        Some(Ok(p)) => v["written"] = p.display().to_string().into(),
        Some(Err(e)) => v["write_error"] = e.clone().into(),
        None => {}
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A segmenting model's spec from a sidecar with `metrics` (TOML lines).
    fn spec(metrics: &str) -> ModelSpec {
        let text = format!(
            "name = \"m\"\nversion = \"1\"\ndescription = \"d\"\nlicense = \"MIT\"\nprovenance = \"p\"\n\
             size_multiple = 8\n[inputs]\nimage = \"image\"\n[outputs]\nlabels = \"labels\"\n[metrics]\n{metrics}"
        );
        ModelSpec::from_sidecar_str(Path::new("m.onnx"), Path::new("m.toml"), &text).expect("a valid sidecar")
    }

    #[test]
    fn the_shipped_note_gives_the_real_street_figures_or_says_plainly_there_are_none() {
        let with = shipped_note(&spec(
            "real_streets_pixel_accuracy_sigma0 = 0.7713\nreal_streets_miou_sigma0 = 0.2431",
        ));
        assert!(
            with.contains("it gets 77 % of the labelled pixels right, mIoU 0.24"),
            "{with}"
        );
        let without = shipped_note(&spec(""));
        assert!(
            without.contains("its class maps on real streets are mostly wrong"),
            "{without}"
        );
        for note in [with, without] {
            assert!(
                note.contains("trained on synthetic scenes") && note.contains("--seg-model"),
                "{note}"
            );
        }
    }
}
