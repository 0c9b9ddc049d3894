use fabstir_e2e::{test_models_dir, workspace_root};

#[test]
fn workspace_root_holds_the_virtual_manifest() {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]"));
}

#[test]
fn shared_models_are_present() {
    let model = test_models_dir().join("stories260K.bin");
    let len = std::fs::metadata(&model)
        .unwrap_or_else(|e| panic!("test model {} missing: {e}", model.display()))
        .len();
    assert_eq!(len, 1_056_540, "stories260K.bin has an unexpected size");
}
