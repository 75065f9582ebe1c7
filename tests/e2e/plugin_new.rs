//! `switchyard plugin new`: the real binary writes a project of each kind
//! whose unit tests pass under `cargo test`, which `switchyard plugin build`
//! builds and `switchyard plugin check` accepts; languages without an SDK
//! and unusable names or folders are refused with exit 2.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::*;

/// Runs `switchyard plugin new` with `args`.
fn new(args: &[&str], dir: &Path) -> Output {
    Command::new(BINARY)
        .args(["plugin", "new"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run switchyard plugin new")
}

/// Asserts `command` exited 0, showing its output if not.
fn succeeded(what: &str, output: Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed: {text}");
    text
}

#[test]
fn each_kind_is_written_tested_built_and_checked() {
    let root = tempfile::tempdir().unwrap();
    // One target folder for the three projects: their dependencies compile
    // once, natively and for wasm.
    let target = workspace().join("target/plugin-new-tests");
    let out = root.path().join("plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (kind, name, world) in [
        ("balancer", "my-balancer", "balancer"),
        ("health", "my-health", "health-check"),
        ("recovery", "my-recovery", "recovery"),
    ] {
        let project = root.path().join(name);
        let text = succeeded("plugin new", new(&["--kind", kind, name], &project));
        assert!(text.contains(&format!("plugin `{name}` in")), "{text}");
        for file in ["Cargo.toml", "README.md", ".gitignore", "src/lib.rs"] {
            assert!(project.join(file).is_file(), "{kind}: no {file}");
        }

        let tests = Command::new(&cargo)
            .args(["test", "--offline", "--quiet"])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .expect("run cargo test");
        let text = succeeded(&format!("cargo test of the {kind}"), tests);
        // The first summary is the library's unit tests: some must run.
        let passed: u32 = text
            .split("test result: ok. ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no test summary: {text}"));
        assert!(passed > 0, "{kind}: no unit test ran: {text}");

        let built = Command::new(BINARY)
            .args(["plugin", "build"])
            .arg(&project)
            .arg("--out")
            .arg(&out)
            .arg("--target-dir")
            .arg(&target)
            .output()
            .expect("run switchyard plugin build");
        succeeded(&format!("plugin build of the {kind}"), built);

        let file = out.join(format!("{name}.wasm"));
        let checked = Command::new(BINARY)
            .args(["plugin", "check", "--json"])
            .arg(&file)
            .output()
            .expect("run switchyard plugin check");
        let text = succeeded(&format!("plugin check of the {kind}"), checked);
        let report: serde_json::Value = serde_json::from_str(&text).expect("a JSON report");
        assert_eq!(report["world"], world, "{report}");
        assert_eq!(report["verdict"]["status"], "ok", "{report}");
    }
}

#[test]
fn only_rust_has_an_sdk_yet() {
    let root = tempfile::tempdir().unwrap();
    for (lang, shown) in [("js", "JavaScript"), ("python", "Python")] {
        let dir = root.path().join(lang);
        let output = new(&["--kind", "balancer", "--lang", lang, "p"], &dir);
        assert_eq!(output.status.code(), Some(2));
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(
            error.contains(&format!("no {shown} SDK exists yet")),
            "{error}"
        );
        assert!(!dir.exists());
    }
}

#[test]
fn a_bad_name_a_used_folder_or_a_missing_sdk_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let output = new(&["--kind", "health", "my.plugin"], &root.path().join("a"));
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("`my.plugin` is not a valid plugin name"),
        "{error}"
    );

    std::fs::write(root.path().join("keep.txt"), "mine").unwrap();
    let output = new(&["--kind", "health", "ok"], root.path());
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("is not empty"), "{error}");

    let output = new(
        &["--kind", "recovery", "--sdk", "/no/such/sdk", "ok"],
        &root.path().join("b"),
    );
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("pass `--sdk PATH`"), "{error}");
}
