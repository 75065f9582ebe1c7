//! Shared by the benchmarks: where the workspace and its target folder are,
//! and building plugin crates into `<target>/bench-plugins/NAME.wasm` with
//! `switchyard::build::build_plugin`, skipping the build when the file is
//! newer than every input.

pub mod live;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use switchyard::build::{build_plugin, BuildRequest};

/// The workspace root (the host crate's parent folder).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the workspace")
        .to_path_buf()
}

/// Cargo's target folder: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => workspace_dir().join(dir),
        None => workspace_dir().join("target"),
    }
}

/// Where the benchmarks put the plugins they build.
pub fn bench_plugin_dir() -> PathBuf {
    target_dir().join("bench-plugins")
}

/// Builds the plugin project at `<workspace>/<crate_path>` (package `name`)
/// into `<target>/bench-plugins/<name>.wasm`, unless that file exists and is
/// newer than the crate's manifest and sources, the SDK's and the WIT
/// contract. Returns the file.
pub fn build(name: &str, crate_path: &str) -> PathBuf {
    let workspace = workspace_dir();
    let crate_dir = workspace.join(crate_path);
    let out_dir = bench_plugin_dir();
    let output = out_dir.join(format!("{name}.wasm"));
    // A Rust crate's inputs, or a JavaScript or Python project's: the
    // files missing for one language are skipped.
    let inputs = [
        crate_dir.join("Cargo.toml"),
        crate_dir.join("package.json"),
        crate_dir.join("pyproject.toml"),
        crate_dir.join("src"),
        workspace.join("sdk/Cargo.toml"),
        workspace.join("sdk/src"),
        workspace.join("sdk/js/src"),
        workspace.join("sdk/python/switchyard"),
        workspace.join("sdk/python/guest"),
        workspace.join("wit"),
    ];
    let newest_input = inputs.iter().filter_map(|p| newest_mtime(p)).max();
    let built_at = std::fs::metadata(&output).and_then(|m| m.modified()).ok();
    if let (Some(built_at), Some(newest_input)) = (built_at, newest_input) {
        if built_at > newest_input {
            return output;
        }
    }
    eprintln!("bench: building plugin {name} from {}", crate_dir.display());
    let built = build_plugin(&BuildRequest {
        crate_dir,
        out_dir,
        target_dir: None,
        allow_install: true,
    })
    .unwrap_or_else(|e| panic!("cannot build plugin {name}: {e:#}"));
    assert_eq!(built, output, "build_plugin wrote an unexpected file");
    output
}

/// The latest modification time of `path` or anything below it.
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let metadata = std::fs::metadata(path).ok()?;
    let own = metadata.modified().ok();
    if !metadata.is_dir() {
        return own;
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| newest_mtime(&entry.path()))
        .chain(own)
        .max()
}

/// Where criterion writes: `$CRITERION_HOME`, else `<target>/criterion`.
#[allow(dead_code)]
pub fn criterion_home() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"))
}

/// Criterion's estimate, in ns, of `<group>/<function>/<parameter>`, if
/// it was written since `started` (the figure in the middle of
/// `time: [...]`).
#[allow(dead_code)]
pub fn estimate_ns(
    started: SystemTime,
    group: &str,
    function: &str,
    parameter: &str,
) -> Option<f64> {
    let path = criterion_home()
        .join(group.replace('/', "_"))
        .join(function)
        .join(parameter)
        .join("new/estimates.json");
    let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= started;
    if !fresh {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
}
