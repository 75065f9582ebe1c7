//! The guest-language build tools, installed on first use into a cache
//! folder from the package registries: componentize-py from PyPI for
//! Python, jco (with rolldown, which bundles the sources) from npm for
//! JavaScript. Versions are pinned: a plugin builds the same way on every
//! machine, and the versions are the ones the host is tested against.
//!
//! Each tool is installed into a folder of its own under a temporary name
//! and renamed into place when complete, so an interrupted install is never
//! taken for a finished one, and two builds installing at once both end
//! with one whole copy.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

/// componentize-py's version: its `bindings` and `componentize` commands and
/// the module layout it expects (a module per exported interface).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// jco's version; its QuickJS backend in sync mode builds small components
/// that do not grow per call.
pub const JCO_VERSION: &str = "1.35.0";

/// The cache folder: `SWITCHYARD_TOOLS_DIR`, else `switchyard/tools` in
/// `XDG_CACHE_HOME` or `~/.cache`.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SWITCHYARD_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("switchyard").join("tools")
}

/// componentize-py, installed with pip into a folder of its own and run as
/// `python3 -m`-style through a one-line script, so the folder can be moved.
#[derive(Debug, Clone)]
pub struct ComponentizePy {
    /// The folder pip installed the package into (`--target`).
    site: PathBuf,
    python: PathBuf,
}

impl ComponentizePy {
    /// The installed tool, installing it first when missing and allowed.
    pub fn find_or_install(allow_install: bool) -> anyhow::Result<Self> {
        let python = find_program(&["python3", "python"]).context(
            "Python plugins need Python 3.10 or later to build: install it \
             (as root: `apt-get install python3 python3-venv`)",
        )?;
        let site = tools_dir()
            .join("python")
            .join(format!("componentize-py-{COMPONENTIZE_PY_VERSION}"));
        let complete = |site: &Path| site.join("componentize_py").is_dir();
        if !complete(&site) {
            if !allow_install {
                bail!(
                    "componentize-py {COMPONENTIZE_PY_VERSION} is not installed in {} \
                     and --no-install was given",
                    site.display()
                );
            }
            install(
                &site,
                "componentize-py",
                COMPONENTIZE_PY_VERSION,
                complete,
                |temporary| {
                    let mut pip = Command::new(&python);
                    pip.args(["-m", "pip", "install", "--disable-pip-version-check"])
                        .args(["--root-user-action", "ignore"])
                        .arg("--target")
                        .arg(temporary)
                        .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"));
                    pip
                },
            )?;
        }
        Ok(ComponentizePy { site, python })
    }

    /// A command running componentize-py with `args`.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.python);
        command
            .arg("-c")
            .arg("import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())")
            .env("PYTHONPATH", &self.site)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        command
    }
}

/// jco and the bundler it ships with.
#[derive(Debug, Clone)]
pub struct Jco {
    bin: PathBuf,
}

impl Jco {
    /// The installed tool, installing it first when missing and allowed.
    pub fn find_or_install(allow_install: bool) -> anyhow::Result<Self> {
        let npm = npm()?;
        let prefix = tools_dir().join("node").join(format!("jco-{JCO_VERSION}"));
        let bin = prefix.join("node_modules").join(".bin");
        let complete = |prefix: &Path| {
            let bin = prefix.join("node_modules").join(".bin");
            bin.join("jco").exists() && bin.join("rolldown").exists()
        };
        if !complete(&prefix) {
            if !allow_install {
                bail!(
                    "jco {JCO_VERSION} is not installed in {} and --no-install was given",
                    prefix.display()
                );
            }
            install(&prefix, "jco", JCO_VERSION, complete, |temporary| {
                let mut install = Command::new(&npm);
                install
                    .args([
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--no-save",
                        "--prefix",
                    ])
                    .arg(temporary)
                    .arg(format!("@bytecodealliance/jco@{JCO_VERSION}"));
                install
            })?;
        }
        Ok(Jco { bin })
    }

    /// A command running `jco`.
    pub fn jco(&self) -> Command {
        Command::new(self.bin.join("jco"))
    }

    /// A command running `rolldown`, the bundler jco depends on.
    pub fn rolldown(&self) -> Command {
        Command::new(self.bin.join("rolldown"))
    }
}

/// npm, which JavaScript plugins are built and tested with.
pub fn npm() -> anyhow::Result<PathBuf> {
    find_program(&["npm"]).context(
        "JavaScript plugins need Node.js 20 or later and npm to build: install them \
         (as root: `apt-get install nodejs npm`)",
    )
}

/// Installs `tool` at `version` into `folder` with `installer`, which is
/// given a temporary folder beside it to fill; says so first, since it
/// takes a while and reaches the network, and lets the installer's own
/// progress show. `complete` tells a whole install from a broken one.
fn install(
    folder: &Path,
    tool: &str,
    version: &str,
    complete: impl Fn(&Path) -> bool,
    installer: impl FnOnce(&Path) -> Command,
) -> anyhow::Result<()> {
    let parent = folder.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create the tools folder {}", parent.display()))?;
    let temporary = parent.join(format!(
        ".{}.{}.partial",
        folder.file_name().and_then(|n| n.to_str()).unwrap_or(tool),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&temporary);
    eprintln!(
        "switchyard: installing {tool} {version} into {} (once; later builds reuse it)",
        folder.display()
    );
    let status = installer(&temporary)
        // The installer's own output is its progress, on stderr: stdout
        // says only what was built.
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("cannot run the installer of {tool}"))?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&temporary);
        bail!("installing {tool} {version} failed (see the messages above)");
    }
    if folder.exists() && !complete(folder) {
        // What an older, broken install left.
        let _ = std::fs::remove_dir_all(folder);
    }
    match std::fs::rename(&temporary, folder) {
        Ok(()) => {}
        // Another build installed it meanwhile: keep that copy.
        Err(_) if complete(folder) => {
            let _ = std::fs::remove_dir_all(&temporary);
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&temporary);
            return Err(error)
                .with_context(|| format!("cannot move {tool} into {}", folder.display()));
        }
    }
    eprintln!("switchyard: installed {tool} {version}");
    Ok(())
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|name| super::which(name))
}
