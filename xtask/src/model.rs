//! `cargo xtask model`: downloads the larger tinyllamas checkpoint (stories15M) and the Llama 2
//! tokenizer for users with internet, verifying their SHA-256. Nothing in the build or the
//! tests downloads anything; this is for people who want a bigger model than the committed one.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// What to fetch: file name, URL, SHA-256.
const FILES: &[(&str, &str, &str)] = &[
    (
        "stories15M.bin",
        "https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin",
        "cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a",
    ),
    (
        "tokenizer.bin",
        "https://github.com/karpathy/llama2.c/raw/b3c4b6c3c4bbff42e5211293280307019368ccb5/tokenizer.bin",
        "50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361",
    ),
];

/// Downloads into `models/stories15M/` (ignored by git), skipping files already verified.
pub(crate) fn download(root: &Path) -> Result<()> {
    let dir = root.join("models/stories15M");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, url, sha256) in FILES {
        let path = dir.join(name);
        if path.exists() && sha256_of(&path)? == *sha256 {
            eprintln!("{name}: present and verified");
            continue;
        }
        let partial = dir.join(format!("{name}.part"));
        crate::run(
            Command::new("curl")
                .args([
                    "--fail",
                    "--location",
                    "--silent",
                    "--show-error",
                    "--output",
                ])
                .arg(&partial)
                .arg(url),
        )
        .context("downloading (curl is needed, and internet access)")?;
        let actual = sha256_of(&partial)?;
        if actual != *sha256 {
            let _ = std::fs::remove_file(&partial);
            bail!("{name}: checksum mismatch: expected {sha256}, got {actual}");
        }
        std::fs::rename(&partial, &path)?;
        eprintln!("{name}: downloaded and verified");
    }
    eprintln!(
        "serve it with a node model entry: backend = {{ embedded = {{ checkpoint = \"{}\", tokenizer = \"{}\" }} }}",
        dir.join("stories15M.bin").display(),
        dir.join("tokenizer.bin").display()
    );
    Ok(())
}

fn sha256_of(path: &Path) -> Result<String> {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("running sha256sum")?;
    if !output.status.success() {
        bail!("sha256sum {} failed", path.display());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_tokenizer_matches_the_pinned_checksum() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let committed = root.join("models/tinyllamas/tokenizer.bin");
        assert_eq!(sha256_of(&committed).unwrap(), FILES[1].2);
    }
}
