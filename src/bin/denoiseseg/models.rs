//! `denoiseseg models`: the shipped and given models, each checked against the model
//! contract with ONNX Runtime (CPU), with its inputs, outputs and classes.
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use denoiseseg::model::ModelSpec;
use denoiseseg::runtime::{self, Provider, SessionOptions};

use crate::common;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  denoiseseg models\n  denoiseseg models my-model.onnx --classes\n  \
                        denoiseseg models --json"
)]
pub struct Args {
    /// Models to check besides the shipped ones (each with its .toml sidecar)
    #[arg(value_name = "MODEL.onnx")]
    pub models: Vec<PathBuf>,
    /// List every class with its colour
    #[arg(long)]
    pub classes: bool,
    /// Path of libonnxruntime.so.1 [default: ORT_DYLIB_PATH, then beside the plugin, then the system's]
    #[arg(long, value_name = "FILE")]
    pub ort_library: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// One model's report.
struct Checked {
    path: PathBuf,
    spec: Option<ModelSpec>,
    /// The contract problem, if any.
    problem: Option<String>,
}

fn check(path: PathBuf, env: &Result<ort::environment::Environment, String>) -> Checked {
    let spec = match ModelSpec::load(&path) {
        Ok(s) => s,
        Err(e) => {
            return Checked {
                path,
                spec: None,
                problem: Some(e.to_string()),
            }
        }
    };
    let problem = match env {
        Ok(env) => {
            let opts = SessionOptions {
                provider: Provider::Cpu,
                intra_threads: 1,
                ..SessionOptions::default()
            };
            runtime::load_model(env, &spec, &opts).err().map(|e| e.to_string())
        }
        Err(e) => Some(format!("not checked against the graph: {e}")),
    };
    Checked {
        path,
        spec: Some(spec),
        problem,
    }
}

pub fn main(args: Args, _verbose: u8) -> Result<ExitCode> {
    let dir = common::models_dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths.extend(args.models.iter().cloned());
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let candidates = runtime::library_candidates(args.ort_library.as_deref(), beside.as_deref());
    let env = runtime::environment(&candidates)
        .map(|(e, _)| e)
        .map_err(|e| e.to_string());
    let checked: Vec<Checked> = paths.into_iter().map(|p| check(p, &env)).collect();
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

fn print_text(c: &Checked, classes: bool) {
    let verdict = match &c.problem {
        None => "contract OK".to_string(),
        Some(p) => format!("BROKEN: {p}"),
    };
    println!("{}", c.path.display());
    let Some(s) = &c.spec else {
        println!("  {verdict}\n");
        return;
    };
    println!("  {} {} - {}", s.name, s.version, s.kind());
    if !s.description.is_empty() {
        println!("  {}", s.description);
    }
    println!("  {verdict}");
    let sigma = s
        .sigma_input
        .as_deref()
        .map(|n| format!(", {n} (noise sigma)"))
        .unwrap_or_default();
    println!("  inputs:  {} (RGB [N,3,H,W]){sigma}", s.image_input);
    let outs: Vec<String> = [
        s.denoised_output.as_ref().map(|n| format!("{n} (denoised)")),
        s.labels_output.as_ref().map(|n| format!("{n} (labels)")),
        s.logits_output.as_ref().map(|n| format!("{n} (logits)")),
    ]
    .into_iter()
    .flatten()
    .collect();
    println!("  outputs: {}", outs.join(", "));
    if let Some([w, h]) = s.input_size {
        println!("  size multiple {}, recommended input {w}x{h}", s.size_multiple);
    } else {
        println!("  size multiple {}", s.size_multiple);
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
    println!();
}

fn to_json(c: &Checked) -> serde_json::Value {
    let mut v = serde_json::json!({
        "path": c.path.display().to_string(),
        "ok": c.problem.is_none(),
        "problem": c.problem,
    });
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
    }
    v
}
