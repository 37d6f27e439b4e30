//! Property presets: a TOML file whose `[denoiseseg]` table (or top level) maps element
//! property names to values, for instance `configs/cpu-realtime.toml`.
use std::path::Path;

use crate::{Error, Result};

/// Reads a preset and returns (property name, value as text) pairs in file order, ready
/// for `set_property_from_str`.
pub fn load_properties(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_properties(&text).map_err(|message| Error::Invalid(format!("config {}: {message}", path.display())))
}

/// Parses preset text; see [`load_properties`].
pub fn parse_properties(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
    let table = match doc.get("denoiseseg") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => return Err("`denoiseseg` must be a table".into()),
        None => doc,
    };
    table
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => return Err(format!("property '{k}': {other} is not a string, number or boolean")),
            };
            Ok((k, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_denoiseseg_table_or_the_top_level() {
        let p = parse_properties("[denoiseseg]\nbatch-size = 2\nleaky = true\nnoise-level = 25.0\n").unwrap();
        assert_eq!(
            p,
            vec![
                ("batch-size".to_string(), "2".to_string()),
                ("leaky".to_string(), "true".to_string()),
                ("noise-level".to_string(), "25".to_string()),
            ]
        );
        let p = parse_properties("execution-provider = \"cpu\"\n").unwrap();
        assert_eq!(p, vec![("execution-provider".to_string(), "cpu".to_string())]);
        assert!(parse_properties("x = [1]").unwrap_err().contains("'x'"));
        assert!(parse_properties("x = ").is_err());
    }
}
