//! `switchyard plugin build`: turns a plugin project into a component in
//! the plugin folder. A Rust crate is built with whichever wasm toolchain
//! the machine has; Python and JavaScript projects with the tools of
//! [`guest`], installed on first use (see [`tools`]).
//!
//! Rust toolchains, in order: a rustup toolchain with the `wasm32-unknown-unknown`
//! target; else Debian's `rustc-web`, `cargo-web`, `rust-web-src` and
//! `lld-19`, building std from source (`-Zbuild-std`); else, when running as
//! root with apt-get, those packages are installed first. Otherwise the error
//! says exactly what is missing.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

pub mod guest;
pub mod tools;

const WASM_TARGET: &str = "wasm32-unknown-unknown";
/// Debian packages of the fallback toolchain.
pub const DEBIAN_PACKAGES: [&str; 4] = ["rustc-web", "cargo-web", "rust-web-src", "lld-19"];
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust/library";
const DEBIAN_WASM_LD: &str = "wasm-ld-19";

/// What `plugin build` was asked to do.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The plugin project: a crate's folder (Cargo.toml), a Python
    /// project's (pyproject.toml) or a JavaScript project's (package.json).
    pub crate_dir: PathBuf,
    /// Where `NAME.wasm` is written.
    pub out_dir: PathBuf,
    /// Cargo's target folder; default: `wasm-plugins` inside the crate's
    /// workspace target folder.
    pub target_dir: Option<PathBuf>,
    /// Whether missing tools may be installed: Debian packages for Rust,
    /// componentize-py or jco into the tools folder.
    pub allow_install: bool,
}

/// A wasm toolchain found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's cargo with the wasm target installed.
    Rustup,
    /// Debian's rustc-web with std built from source.
    DebianBuildStd,
}

/// Finds a toolchain, installing the Debian fallback when allowed and possible.
pub fn find_toolchain(allow_install: bool) -> anyhow::Result<Toolchain> {
    if rustup_has_wasm_target() {
        return Ok(Toolchain::Rustup);
    }
    let missing = debian_missing();
    if missing.is_empty() {
        return Ok(Toolchain::DebianBuildStd);
    }
    let can_install = allow_install && is_root() && which("apt-get").is_some();
    if can_install {
        eprintln!(
            "switchyard: no wasm toolchain; installing Debian packages {}",
            DEBIAN_PACKAGES.join(" ")
        );
        install_debian_packages()?;
        let missing = debian_missing();
        if missing.is_empty() {
            return Ok(Toolchain::DebianBuildStd);
        }
        bail!(
            "installed {} but still missing: {}",
            DEBIAN_PACKAGES.join(" "),
            missing.join(", ")
        );
    }
    bail!(
        "no toolchain can build wasm32 plugins here. Either run \
         `rustup target add {WASM_TARGET}`, or install the Debian packages {} \
         (as root: `apt-get install {}`). Missing: {}",
        DEBIAN_PACKAGES.join(", "),
        DEBIAN_PACKAGES.join(" "),
        missing.join(", ")
    )
}

/// Builds the project and writes `OUT/NAME.wasm` (NAME is the package's
/// name); returns that path. The file is written under a temporary name and
/// renamed, so a watching host never sees half a file.
pub fn build_plugin(request: &BuildRequest) -> anyhow::Result<PathBuf> {
    let (component, name) = match guest::Language::of(&request.crate_dir)? {
        guest::Language::Rust => build_rust(request)?,
        guest::Language::Python => guest::build_python(&request.crate_dir, request.allow_install)?,
        guest::Language::JavaScript => {
            guest::build_javascript(&request.crate_dir, request.allow_install)?
        }
    };
    std::fs::create_dir_all(&request.out_dir)
        .with_context(|| format!("cannot create {}", request.out_dir.display()))?;
    let output = request.out_dir.join(format!("{name}.wasm"));
    let temporary = request.out_dir.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&temporary, component)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, &output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(output)
}

/// Builds a Rust plugin crate; returns the component and the package name.
fn build_rust(request: &BuildRequest) -> anyhow::Result<(Vec<u8>, String)> {
    let manifest = request.crate_dir.join("Cargo.toml");
    let metadata = Metadata::read(&manifest)?;
    let toolchain = find_toolchain(request.allow_install)?;
    let target_dir = request
        .target_dir
        .clone()
        .unwrap_or_else(|| metadata.target_directory.join("wasm-plugins"));
    let module = compile(&toolchain, &manifest, &metadata.package_name, &target_dir)?;
    let bytes =
        std::fs::read(&module).with_context(|| format!("cannot read {}", module.display()))?;
    let component = componentize(&bytes)
        .with_context(|| format!("{} is not a plugin module", module.display()))?;
    Ok((component, metadata.package_name))
}

/// Wraps a core module that carries wit-bindgen's component-type section
/// into a component.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .module(module)?
        .validate(true)
        .encode()
}

struct Metadata {
    package_name: String,
    target_directory: PathBuf,
}

impl Metadata {
    fn read(manifest: &Path) -> anyhow::Result<Self> {
        let output = Command::new(cargo_for_metadata())
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(manifest)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run `cargo metadata`")?;
        if !output.status.success() {
            bail!("`cargo metadata` failed for {}", manifest.display());
        }
        let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let manifest = manifest.canonicalize()?;
        let package = json["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["manifest_path"].as_str().map(PathBuf::from).as_deref() == Some(&manifest))
            .with_context(|| format!("no package in {}", manifest.display()))?;
        let has_cdylib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"))
            });
        if !has_cdylib {
            bail!(
                "{} builds no cdylib: add `[lib] crate-type = [\"cdylib\", \"rlib\"]`",
                manifest.display()
            );
        }
        Ok(Metadata {
            package_name: package["name"].as_str().unwrap_or_default().to_string(),
            target_directory: PathBuf::from(json["target_directory"].as_str().unwrap_or("target")),
        })
    }
}

fn cargo_for_metadata() -> PathBuf {
    which("cargo").unwrap_or_else(|| PathBuf::from(DEBIAN_CARGO))
}

fn compile(
    toolchain: &Toolchain,
    manifest: &Path,
    package: &str,
    target_dir: &Path,
) -> anyhow::Result<PathBuf> {
    let mut command = match toolchain {
        Toolchain::Rustup => Command::new("cargo"),
        Toolchain::DebianBuildStd => {
            let mut command = Command::new(DEBIAN_CARGO);
            command
                .env("RUSTC", DEBIAN_RUSTC)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", DEBIAN_WASM_LD)
                // Debian's cargo must not pick up rustup's toolchain choice.
                .env_remove("RUSTUP_TOOLCHAIN")
                .env_remove("RUSTC_WRAPPER")
                .env_remove("RUSTC_WORKSPACE_WRAPPER");
            command
        }
    };
    command
        .arg("build")
        .args([
            "--release",
            "--target",
            WASM_TARGET,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .args(["-p", package])
        .arg("--target-dir")
        .arg(target_dir)
        .args([
            "--config",
            "profile.release.panic=\"abort\"",
            "--config",
            "profile.release.lto=true",
            "--config",
            "profile.release.codegen-units=1",
            "--config",
            "profile.release.debug=false",
            "--config",
            "profile.release.strip=true",
            "--config",
            "profile.release.opt-level=3",
        ])
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if *toolchain == Toolchain::DebianBuildStd {
        command.arg("-Zbuild-std=std,panic_abort");
    }
    let mut child = command.spawn().context("cannot run cargo")?;
    let stdout = child.stdout.take().expect("piped");
    let mut artifact = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact"
            || message["target"]["name"].as_str() != Some(&package.replace('-', "_"))
        {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            artifact = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
                .or(artifact);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo could not build {package} for {WASM_TARGET} (see the errors above)");
    }
    artifact.with_context(|| format!("cargo built {package} but reported no .wasm file"))
}

fn rustup_has_wasm_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET)
        })
        .unwrap_or(false)
}

fn debian_missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(DEBIAN_RUSTC).exists() {
        missing.push(format!("{DEBIAN_RUSTC} (package rustc-web)"));
    }
    if !Path::new(DEBIAN_CARGO).exists() {
        missing.push(format!("{DEBIAN_CARGO} (package cargo-web)"));
    }
    if !Path::new(DEBIAN_RUST_SRC).exists() {
        missing.push(format!("{DEBIAN_RUST_SRC} (package rust-web-src)"));
    }
    if which(DEBIAN_WASM_LD).is_none() {
        missing.push(format!("{DEBIAN_WASM_LD} (package lld-19)"));
    }
    missing
}

fn install_debian_packages() -> anyhow::Result<()> {
    let update = Command::new("apt-get")
        .arg("update")
        .stdout(Stdio::null())
        .status()?;
    if !update.success() {
        bail!("`apt-get update` failed");
    }
    let install = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(DEBIAN_PACKAGES)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()?;
    if !install.success() {
        bail!("`apt-get install {}` failed", DEBIAN_PACKAGES.join(" "));
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}
