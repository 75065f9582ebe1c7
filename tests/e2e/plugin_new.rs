//! `switchyard plugin new`: the real binary writes a project of each kind,
//! in each language, whose unit tests pass under the language's own runner
//! (`cargo test`, `node --test`, pytest), which `switchyard plugin build`
//! builds and `switchyard plugin check` accepts; unusable names, folders or
//! SDK paths are refused with exit 2.

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

        build_and_check(&project, name, world, &out, Some(&target));
    }
}

/// The three kinds as `--kind` names them, and the world `plugin check`
/// reports for each.
const KINDS: [(&str, &str); 3] = [
    ("balancer", "balancer"),
    ("health", "health-check"),
    ("recovery", "recovery"),
];

/// Builds `project` into `out` and checks the file: the world is `world`
/// and the verdict ok.
fn build_and_check(project: &Path, name: &str, world: &str, out: &Path, target: Option<&Path>) {
    let mut build = Command::new(BINARY);
    build
        .args(["plugin", "build"])
        .arg(project)
        .arg("--out")
        .arg(out);
    if let Some(target) = target {
        build.arg("--target-dir").arg(target);
    }
    succeeded(
        &format!("plugin build of {name}"),
        build.output().expect("run switchyard plugin build"),
    );
    let file = out.join(format!("{name}.wasm"));
    let checked = Command::new(BINARY)
        .args(["plugin", "check", "--json"])
        .arg(&file)
        .output()
        .expect("run switchyard plugin check");
    let text = succeeded(&format!("plugin check of {name}"), checked);
    let report: serde_json::Value = serde_json::from_str(&text).expect("a JSON report");
    assert_eq!(report["world"], world, "{report}");
    assert_eq!(report["verdict"]["status"], "ok", "{report}");
}

#[test]
fn each_kind_in_javascript_is_written_tested_built_and_checked() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("plugins");
    for (kind, world) in KINDS {
        let name = format!("my-js-{kind}");
        let project = root.path().join(&name);
        let text = succeeded(
            "plugin new",
            new(&["--kind", kind, "--lang", "js", &name], &project),
        );
        assert!(text.contains("npm install && npm test"), "{text}");
        for file in [
            "package.json",
            "README.md",
            ".gitignore",
            "src/plugin.js",
            "test/plugin.test.js",
        ] {
            assert!(project.join(file).is_file(), "{kind}: no {file}");
        }
        let npm = |args: &[&str]| {
            Command::new("npm")
                .args(args)
                .current_dir(&project)
                .output()
                .expect("run npm")
        };
        succeeded("npm install", npm(&["install", "--no-audit", "--no-fund"]));
        let text = succeeded(&format!("npm test of the {kind}"), npm(&["test"]));
        // node --test's summary: some tests ran, none failed.
        let passed: u32 = text
            .split("# pass ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or_else(|| panic!("no test summary: {text}"));
        assert!(passed > 0, "{kind}: no test ran: {text}");
        assert!(text.contains("# fail 0"), "{text}");
        build_and_check(&project, &name, world, &out, None);
    }
}

#[test]
fn each_kind_in_python_is_written_tested_built_and_checked() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("plugins");
    for (kind, world) in KINDS {
        let name = format!("my-py-{kind}");
        let project = root.path().join(&name);
        let text = succeeded(
            "plugin new",
            new(&["--kind", kind, "--lang", "python", &name], &project),
        );
        assert!(text.contains("python3 -m pytest"), "{text}");
        for file in [
            "pyproject.toml",
            "README.md",
            ".gitignore",
            "src/plugin.py",
            "tests/test_plugin.py",
        ] {
            assert!(project.join(file).is_file(), "{kind}: no {file}");
        }
        let tests = pytest().current_dir(&project).output().expect("run pytest");
        let text = succeeded(&format!("pytest of the {kind}"), tests);
        // pytest's summary: `N passed in …`, none failed.
        let passed: u32 = text
            .lines()
            .rev()
            .find_map(|line| {
                line.split(" passed")
                    .next()
                    .filter(|_| line.contains(" passed"))
            })
            .and_then(|count| count.trim().rsplit(' ').next())
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("no test summary: {text}"));
        assert!(passed > 0, "{kind}: no test ran: {text}");
        assert!(!text.contains(" failed"), "{text}");
        build_and_check(&project, &name, world, &out, None);
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

    // The Rust SDK is not a JavaScript one.
    let rust_sdk = workspace().join("sdk");
    let output = new(
        &[
            "--kind",
            "balancer",
            "--lang",
            "js",
            "--sdk",
            rust_sdk.to_str().unwrap(),
            "ok",
        ],
        &root.path().join("c"),
    );
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("no JavaScript SDK at"), "{error}");
    assert!(!root.path().join("c").exists());
}
