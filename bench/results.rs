//! Writing one section of `bench/results.json`, and the percentiles its figures use.
//!
//! The benchmarks that measure what criterion cannot (the marketplace end to end, gas,
//! discovery percentiles) and `cargo xtask bench` itself include this file with `#[path]`.
//! Each replaces its own top-level key and keeps the others, so that one `cargo xtask bench`
//! run leaves one file holding every figure.

use std::io::{Error, ErrorKind};
use std::path::Path;

/// Replaces `key` in the JSON object stored at `file` with `value`, keeping every other
/// key; creates the file (and its folder) if there is none. A file that is not a JSON object
/// is an error rather than being overwritten.
pub(crate) fn write_section(
    file: &Path,
    key: &str,
    value: serde_json::Value,
) -> std::io::Result<()> {
    let mut sections = match std::fs::read_to_string(file) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(sections)) => sections,
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!(
                        "{} is not a JSON object: delete it to start afresh",
                        file.display()
                    ),
                ));
            }
        },
        Err(e) if e.kind() == ErrorKind::NotFound => serde_json::Map::new(),
        Err(e) => return Err(e),
    };
    sections.insert(key.to_owned(), value);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Written aside and renamed, so that an interrupted run never leaves half a file.
    let partial = file.with_extension("json.partial");
    let mut text = serde_json::to_string_pretty(&sections)?;
    text.push('\n');
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, file)
}

/// The nearest-rank percentile `p` (0 to 1) of `samples`, which it sorts: the one definition
/// of p50 and p95 behind every figure in the results.
#[allow(dead_code)] // Used by the benchmarks that time runs, not by xtask.
pub(crate) fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}
