use std::path::Path;

use super::*;

#[test]
fn plugin_names_are_file_stems_of_wasm_files() {
    assert_eq!(
        plugin_name(Path::new("plugins/p2c.wasm")).as_deref(),
        Some("p2c")
    );
    assert_eq!(
        plugin_name(Path::new("plugins/peak-ewma.wasm")).as_deref(),
        Some("peak-ewma")
    );
    assert_eq!(plugin_name(Path::new("plugins/.p2c.wasm.tmp")), None);
    assert_eq!(plugin_name(Path::new("plugins/readme.md")), None);
    assert_eq!(plugin_name(Path::new("plugins/has space.wasm")), None);
}

#[test]
fn headers_that_are_not_components_are_named() {
    assert!(check_header(b"hello world")
        .unwrap_err()
        .contains("not a WebAssembly file"));
    let core_module = [0, b'a', b's', b'm', 1, 0, 0, 0];
    assert!(check_header(&core_module)
        .unwrap_err()
        .contains("core WebAssembly module"));
    let component = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
    assert!(check_header(&component).is_ok());
}

#[test]
fn runtime_rejects_garbage_and_keeps_nothing() {
    let dir = std::env::temp_dir().join(format!("switchyard-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = crate::config::PluginsConfig {
        dir: dir.clone(),
        max_instances: 8,
        ..Default::default()
    };
    let runtime = PluginRuntime::new(&config).unwrap();
    let path = dir.join("junk.wasm");
    std::fs::write(&path, b"\0asm\x0d\0\x01\0 truncated").unwrap();
    let error = runtime.load(&path).unwrap_err();
    assert_eq!(error.stage, "compile");
    assert!(error.to_string().starts_with("plugin `junk` ("), "{error}");
    let slot = runtime.slot("junk");
    assert!(slot.current().is_none());
    assert_eq!(slot.history.lock().unwrap().rejections, 1);
    std::fs::remove_dir_all(dir).unwrap();
}
