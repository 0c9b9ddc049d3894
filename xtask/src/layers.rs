//! The layer check: crates may depend on each other only in the allowed direction.
//!
//! The rules are the ones in `docs/ARCHITECTURE.md`: core <- contracts <- payments;
//! core <- p2p; core <- storage, inference; {contracts, payments, p2p, storage} <- sdk;
//! {contracts, payments, p2p, storage, inference} <- node; {sdk, node, ...} <- cli. The host
//! never depends on the client SDK, and `fabstir-p2p` never on `fabstir-contracts`. Normal,
//! build and dev dependencies are all checked: a test-only edge against the direction is still
//! an edge. [`FORBIDDEN`] keeps runtimes and chain clients out of the bottom layers.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// For each workspace package, the workspace packages it may depend on. A package missing
/// from this table is an error, so a new crate must be placed in the layering on purpose.
pub(crate) const ALLOWED: &[(&str, &[&str])] = &[
    ("fabstir-core", &[]),
    ("fabstir-contracts", &["fabstir-core"]),
    ("fabstir-payments", &["fabstir-core", "fabstir-contracts"]),
    ("fabstir-p2p", &["fabstir-core"]),
    ("fabstir-storage", &["fabstir-core"]),
    ("fabstir-inference", &["fabstir-core"]),
    ("fabstir-train", &["fabstir-core", "fabstir-inference"]),
    (
        "fabstir-sdk",
        &[
            "fabstir-core",
            "fabstir-contracts",
            "fabstir-payments",
            "fabstir-p2p",
            "fabstir-storage",
        ],
    ),
    (
        "fabstir-node",
        &[
            "fabstir-core",
            "fabstir-contracts",
            "fabstir-payments",
            "fabstir-p2p",
            "fabstir-storage",
            "fabstir-inference",
        ],
    ),
    ("fabstir-gateway", &["fabstir-core", "fabstir-sdk"]),
    (
        "fabstir-cli",
        &[
            "fabstir-core",
            "fabstir-contracts",
            "fabstir-payments",
            "fabstir-p2p",
            "fabstir-storage",
            "fabstir-inference",
            "fabstir-sdk",
            "fabstir-node",
            "fabstir-gateway",
        ],
    ),
    (
        "fabstir-e2e",
        &[
            "fabstir-core",
            "fabstir-contracts",
            "fabstir-payments",
            "fabstir-p2p",
            "fabstir-storage",
            "fabstir-inference",
            "fabstir-sdk",
            "fabstir-node",
            "fabstir-cli",
        ],
    ),
    ("xtask", &[]),
];

/// Third-party crates a workspace package may not depend on (directly, in any kind of
/// dependency): core knows nothing of runtimes, networking or RPC, and ethers' providers and
/// middleware stay in the layers that talk to the chain.
pub(crate) const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "fabstir-core",
        &[
            "tokio",
            "libp2p",
            "libp2p-stream",
            "ethers",
            "ethers-providers",
            "ethers-middleware",
            "ethers-contract",
            "ethers-signers",
            "reqwest",
        ],
    ),
    (
        "fabstir-p2p",
        &[
            "ethers",
            "ethers-providers",
            "ethers-middleware",
            "ethers-contract",
        ],
    ),
];

/// Runs `cargo metadata` on the workspace and checks every edge between its packages.
pub(crate) fn check_workspace(root: &Path) -> Result<()> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Value = serde_json::from_slice(&output.stdout).context("parsing metadata")?;
    let edges = workspace_edges(&metadata)?;
    let mut result = check(&edges);
    if let Err(more) = check_forbidden(&all_dependencies(&metadata)?) {
        result = Err(result
            .err()
            .unwrap_or_default()
            .into_iter()
            .chain(more)
            .collect());
    }
    match result {
        Ok(()) => {
            eprintln!("layers: {} crates, dependencies one way", edges.len());
            Ok(())
        }
        Err(errors) => bail!("layer check failed:\n  {}", errors.join("\n  ")),
    }
}

/// Extracts, for each workspace package, the names of the workspace packages it depends on.
pub(crate) fn workspace_edges(metadata: &Value) -> Result<BTreeMap<String, Vec<String>>> {
    let packages = metadata["packages"]
        .as_array()
        .context("metadata has no packages")?;
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let mut edges = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().context("package without a name")?;
        // A crate may dev-depend on itself (to turn on a test feature); that is no edge.
        let deps = package["dependencies"]
            .as_array()
            .context("package without dependencies")?
            .iter()
            .filter_map(|d| d["name"].as_str())
            .filter(|d| names.contains(d) && *d != name)
            .map(str::to_owned)
            .collect();
        edges.insert(name.to_owned(), deps);
    }
    Ok(edges)
}

/// For each workspace package, the names of every crate it depends on (workspace or not).
pub(crate) fn all_dependencies(metadata: &Value) -> Result<BTreeMap<String, Vec<String>>> {
    let packages = metadata["packages"]
        .as_array()
        .context("metadata has no packages")?;
    let mut deps = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().context("package without a name")?;
        let names = package["dependencies"]
            .as_array()
            .context("package without dependencies")?
            .iter()
            .filter_map(|d| d["name"].as_str())
            .map(str::to_owned)
            .collect();
        deps.insert(name.to_owned(), names);
    }
    Ok(deps)
}

/// Checks dependencies against [`FORBIDDEN`]; on failure returns one message per problem.
pub(crate) fn check_forbidden(deps: &BTreeMap<String, Vec<String>>) -> Result<(), Vec<String>> {
    let errors: Vec<String> = FORBIDDEN
        .iter()
        .flat_map(|(package, banned)| {
            deps.get(*package)
                .into_iter()
                .flatten()
                .filter(|d| banned.contains(&d.as_str()))
                .map(move |d| {
                    format!(
                        "{package} may not depend on {d} (see docs/ARCHITECTURE.md, invariants)"
                    )
                })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Checks edges against [`ALLOWED`]; on failure returns one message per problem.
pub(crate) fn check(edges: &BTreeMap<String, Vec<String>>) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    for (from, deps) in edges {
        let Some((_, allowed)) = ALLOWED.iter().find(|(name, _)| name == from) else {
            errors.push(format!(
                "{from} is not placed in the layering: add it to xtask/src/layers.rs and docs/ARCHITECTURE.md"
            ));
            continue;
        };
        for to in deps {
            if !allowed.contains(&to.as_str()) {
                errors.push(format!(
                    "{from} may not depend on {to} (dependencies go one way; see docs/ARCHITECTURE.md)"
                ));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(from, to)| (from.to_string(), to.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn allowed_layering_passes() {
        let ok = edges(&[
            ("fabstir-core", &[]),
            ("fabstir-p2p", &["fabstir-core"]),
            ("fabstir-sdk", &["fabstir-core", "fabstir-p2p"]),
        ]);
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn p2p_depending_on_contracts_fails() {
        let bad = edges(&[("fabstir-p2p", &["fabstir-core", "fabstir-contracts"])]);
        let errors = check(&bad).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("fabstir-p2p may not depend on fabstir-contracts"));
    }

    #[test]
    fn node_depending_on_the_sdk_fails() {
        let bad = edges(&[("fabstir-node", &["fabstir-core", "fabstir-sdk"])]);
        let errors = check(&bad).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("fabstir-node may not depend on fabstir-sdk"));
    }

    #[test]
    fn runtimes_and_providers_in_core_fail() {
        for banned in ["tokio", "libp2p", "ethers-providers", "ethers"] {
            let bad = edges(&[("fabstir-core", &["serde", "ethers-core", banned])]);
            let errors = check_forbidden(&bad).unwrap_err();
            assert_eq!(errors.len(), 1, "{banned}");
            assert!(errors[0].contains(&format!("fabstir-core may not depend on {banned}")));
        }
        let ok = edges(&[("fabstir-core", &["serde", "ethers-core", "async-trait"])]);
        assert_eq!(check_forbidden(&ok), Ok(()));
    }

    #[test]
    fn core_depending_upwards_fails() {
        let bad = edges(&[("fabstir-core", &["fabstir-sdk"])]);
        assert!(check(&bad).is_err());
    }

    #[test]
    fn unknown_crate_must_be_placed() {
        let bad = edges(&[("fabstir-new", &[])]);
        let errors = check(&bad).unwrap_err();
        assert!(errors[0].contains("not placed in the layering"));
    }

    #[test]
    fn edges_come_from_cargo_metadata_shape() {
        let metadata = serde_json::json!({
            "packages": [
                {"name": "fabstir-core", "dependencies": [{"name": "serde"}]},
                {"name": "fabstir-p2p", "dependencies": [
                    {"name": "fabstir-core"}, {"name": "fabstir-contracts"}, {"name": "tokio"}
                ]},
                {"name": "fabstir-contracts", "dependencies": [{"name": "fabstir-core"}]}
            ]
        });
        let found = workspace_edges(&metadata).unwrap();
        assert_eq!(found["fabstir-core"], Vec::<String>::new());
        assert_eq!(
            found["fabstir-p2p"],
            vec!["fabstir-core", "fabstir-contracts"]
        );
        assert!(
            check(&found).is_err(),
            "the wrong-direction edge must be caught"
        );
    }

    #[test]
    fn this_workspace_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        check_workspace(root).unwrap();
    }
}
