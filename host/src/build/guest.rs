//! `switchyard plugin build` for Python and JavaScript plugin projects.
//!
//! Python: componentize-py turns the project's module, the SDK and the
//! SDK's glue modules (one per exported interface, named as
//! componentize-py expects) into a component. JavaScript: a generated entry
//! module binds the project's default export to the world through the SDK's
//! `guest` module; rolldown bundles it with the SDK into one file, which
//! jco's QuickJS backend, in sync mode, turns into a component. Both read
//! the contract from the WIT embedded in this binary, so a plugin is always
//! built against the contract the host speaks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use serde::Deserialize;

use super::tools::{ComponentizePy, Jco};
use crate::templates::{Kind, Lang};

/// The contract, as this host speaks it.
const PLUGIN_WIT: &str = include_str!("../../../wit/plugin.wit");
/// The import names a JavaScript bundle leaves to the component.
const JS_HOST_IMPORT: &str = "switchyard:plugin/host@0.2.1";
const JS_STORE_IMPORT: &str = "switchyard:plugin/store@0.2.1";
const JS_PROBE_IMPORT: &str = "switchyard:plugin/probe@0.2.1";
/// The main module of a Python build, generated beside the WIT.
const PY_ENTRY: &str = "switchyard_entry";

/// The language of a plugin project, told by the file at its top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `Cargo.toml`.
    Rust,
    /// `pyproject.toml` with a `[tool.switchyard]` table.
    Python,
    /// `package.json` with a `"switchyard"` object.
    JavaScript,
}

impl Language {
    /// The language of the project in `dir`, or an error saying what a
    /// plugin folder holds.
    pub fn of(dir: &Path) -> anyhow::Result<Language> {
        if dir.join("Cargo.toml").is_file() {
            return Ok(Language::Rust);
        }
        if dir.join("pyproject.toml").is_file() {
            return Ok(Language::Python);
        }
        if dir.join("package.json").is_file() {
            return Ok(Language::JavaScript);
        }
        if !dir.is_dir() {
            bail!("{} is not a folder", dir.display());
        }
        bail!(
            "{} holds no plugin project: a Rust plugin has a Cargo.toml, a Python plugin a \
             pyproject.toml with [tool.switchyard], a JavaScript plugin a package.json with \
             \"switchyard\" (`switchyard plugin new` writes one)",
            dir.display()
        )
    }
}

#[derive(Debug, Deserialize)]
struct PyProject {
    project: Option<PyProjectTable>,
    tool: Option<PyTools>,
}

#[derive(Debug, Deserialize)]
struct PyProjectTable {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PyTools {
    switchyard: Option<PySwitchyard>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PySwitchyard {
    kind: Kind,
    #[serde(default = "default_python_module")]
    module: String,
    sdk: Option<PathBuf>,
}

fn default_python_module() -> String {
    "plugin".into()
}

#[derive(Debug, Deserialize)]
struct PackageJson {
    name: Option<String>,
    switchyard: Option<JsSwitchyard>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsSwitchyard {
    kind: Kind,
    #[serde(default = "default_js_main")]
    main: String,
}

fn default_js_main() -> String {
    "src/plugin.js".into()
}

/// Builds the Python project in `dir`; returns the component's bytes and
/// the plugin's name.
pub fn build_python(dir: &Path, allow_install: bool) -> anyhow::Result<(Vec<u8>, String)> {
    let manifest = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let project: PyProject = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", manifest.display(), e.message()))?;
    let name = plugin_name(
        project.project.and_then(|p| p.name),
        &manifest,
        "[project] name",
    )?;
    let settings = project.tool.and_then(|t| t.switchyard).with_context(|| {
        format!(
            "{}: no [tool.switchyard] table: add `kind = \"balancer\"` (or \"health\", \
                 \"recovery\") under [tool.switchyard]",
            manifest.display()
        )
    })?;
    if settings.module.is_empty()
        || !settings
            .module
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!(
            "{}: [tool.switchyard] module: `{}` is not a Python module name",
            manifest.display(),
            settings.module
        );
    }
    let source = dir.join("src");
    if !source.join(format!("{}.py", settings.module)).is_file() {
        bail!(
            "{}: [tool.switchyard] module is `{}`, but src/{}.py does not exist",
            manifest.display(),
            settings.module,
            settings.module
        );
    }
    let sdk = match settings.sdk {
        Some(sdk) => dir.join(sdk),
        None => crate::templates::default_sdk(Lang::Python),
    };
    if !sdk.join("switchyard").join("__init__.py").is_file() || !sdk.join("guest").is_dir() {
        bail!(
            "{}: [tool.switchyard] sdk: {} is not the Switchyard Python SDK (sdk/python of a \
             Switchyard checkout)",
            manifest.display(),
            sdk.display()
        );
    }
    let staging = staging_dir(dir)?;
    let wit = write_wit(&staging)?;
    let tool = ComponentizePy::find_or_install(allow_install)?;
    let output = staging.join(format!("{name}.wasm"));
    eprintln!(
        "switchyard: building {name} ({} plugin, Python, componentize-py {})",
        settings.kind,
        super::tools::COMPONENTIZE_PY_VERSION
    );
    // A folder of its own: componentize-py bundles what its paths hold.
    let entry = staging.join("entry");
    std::fs::create_dir_all(&entry)
        .and_then(|()| {
            std::fs::write(
                entry.join(format!("{PY_ENTRY}.py")),
                python_entry(settings.kind, &settings.module),
            )
        })
        .with_context(|| format!("cannot write the entry module in {}", entry.display()))?;
    let mut command = tool.command();
    command
        .arg("-d")
        .arg(&wit)
        .args(["-w", settings.kind.world(), "componentize", "-p"])
        .arg(absolute(&source)?)
        .arg("-p")
        .arg(absolute(&sdk)?)
        .arg("-p")
        .arg(absolute(&sdk.join("guest"))?)
        .arg("-p")
        .arg(&entry)
        .arg(PY_ENTRY)
        .arg("-o")
        .arg(&output);
    run(command, "componentize-py")?;
    let bytes =
        std::fs::read(&output).with_context(|| format!("cannot read {}", output.display()))?;
    Ok((bytes, name))
}

/// Builds the JavaScript project in `dir`; returns the component's bytes
/// and the plugin's name.
pub fn build_javascript(dir: &Path, allow_install: bool) -> anyhow::Result<(Vec<u8>, String)> {
    let manifest = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let package: PackageJson =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", manifest.display()))?;
    let name = plugin_name(package.name, &manifest, "\"name\"")?;
    let settings = package.switchyard.with_context(|| {
        format!(
            "{}: no \"switchyard\" object: add \"switchyard\": {{ \"kind\": \"balancer\" }} \
             (or \"health\", \"recovery\")",
            manifest.display()
        )
    })?;
    let main = dir.join(&settings.main);
    if !main.is_file() {
        bail!(
            "{}: \"switchyard\".main is `{}`, which does not exist",
            manifest.display(),
            settings.main
        );
    }
    let npm = super::tools::npm()?;
    let jco = Jco::find_or_install(allow_install)?;
    if !dir
        .join("node_modules")
        .join("@switchyard")
        .join("sdk")
        .exists()
    {
        eprintln!("switchyard: installing {name}'s dependencies (npm install)");
        let mut install = Command::new(&npm);
        install
            .args(["install", "--no-audit", "--no-fund"])
            .current_dir(dir);
        run(install, "npm install")?;
        if !dir
            .join("node_modules")
            .join("@switchyard")
            .join("sdk")
            .exists()
        {
            bail!(
                "{}: the project does not depend on @switchyard/sdk: add \"@switchyard/sdk\": \
                 \"file:PATH/sdk/js\" to its devDependencies",
                manifest.display()
            );
        }
    }
    let staging = staging_dir(dir)?;
    let wit = write_wit(&staging)?;
    let entry = staging.join("entry.js");
    let main_import = relative_import(&staging, &absolute(&main)?);
    std::fs::write(&entry, js_entry(settings.kind, &main_import))
        .with_context(|| format!("cannot write {}", entry.display()))?;
    eprintln!(
        "switchyard: building {name} ({} plugin, JavaScript, jco {} QuickJS)",
        settings.kind,
        super::tools::JCO_VERSION
    );
    let bundle = staging.join("bundle.js");
    let mut rolldown = jco.rolldown();
    rolldown
        .arg(&entry)
        .args(["--format", "esm", "--file"])
        .arg(&bundle)
        .args(["--external", JS_HOST_IMPORT, "--external", JS_PROBE_IMPORT])
        .args(["--external", JS_STORE_IMPORT])
        .current_dir(dir);
    run(rolldown, "rolldown")?;
    let output = staging.join(format!("{name}.wasm"));
    let mut componentize = jco.jco();
    // jco takes the source relative to a folder of its own choosing:
    // every path is absolute.
    componentize
        .arg("componentize")
        .arg(&bundle)
        .arg("-w")
        .arg(&wit)
        .args(["-n", settings.kind.world()])
        .args(["--backend", "qjs", "--backend-qjs-disable-async"])
        .arg("-o")
        .arg(&output)
        .current_dir(dir);
    run(componentize, "jco componentize")?;
    let bytes =
        std::fs::read(&output).with_context(|| format!("cannot read {}", output.display()))?;
    Ok((bytes, name))
}

/// The module the bundle starts from: the host's imports bound into the
/// SDK, and the project's default export served as the world's resource.
/// The main module of a Python build: it imports the project's module (so
/// its plugin class is defined) and, for the worlds with state exports, the
/// class componentize-py looks for in the main module.
fn python_entry(kind: Kind, module: &str) -> String {
    let state = match kind {
        Kind::Balancer => "from balancer_state import BalancerState  # noqa: F401\n",
        Kind::Health => "",
        Kind::Recovery => "from recovery_state import RecoveryState  # noqa: F401\n",
    };
    format!(
        "\"\"\"Generated by `switchyard plugin build`.\"\"\"\n\n\
         import {module}  # noqa: F401\n\
         {state}"
    )
}

fn js_entry(kind: Kind, main: &str) -> String {
    let main = serde_json::to_string(main).expect("a string");
    match kind {
        Kind::Balancer => format!(
            "import * as host from '{JS_HOST_IMPORT}';\n\
             import * as store from '{JS_STORE_IMPORT}';\n\
             import {{ balancerExports, stateExports }} from '@switchyard/sdk/guest';\n\
             import Plugin from {main};\n\
             export const balancer = balancerExports(Plugin, host, store);\n\
             export const balancerState = stateExports(host);\n"
        ),
        Kind::Health => format!(
            "import * as host from '{JS_HOST_IMPORT}';\n\
             import * as probe from '{JS_PROBE_IMPORT}';\n\
             import {{ healthExports }} from '@switchyard/sdk/guest';\n\
             import Plugin from {main};\n\
             export const healthCheck = healthExports(Plugin, host, probe);\n"
        ),
        Kind::Recovery => format!(
            "import * as host from '{JS_HOST_IMPORT}';\n\
             import * as store from '{JS_STORE_IMPORT}';\n\
             import {{ recoveryExports, stateExports }} from '@switchyard/sdk/guest';\n\
             import Plugin from {main};\n\
             export const recovery = recoveryExports(Plugin, host, store);\n\
             export const recoveryState = stateExports(host);\n"
        ),
    }
}

/// The plugin's name: its file is `NAME.wasm`, and pools name it so.
fn plugin_name(name: Option<String>, manifest: &Path, key: &str) -> anyhow::Result<String> {
    let name = name.with_context(|| format!("{}: {key} is missing", manifest.display()))?;
    // The name the runtime will find the file under.
    if !crate::config::is_valid_name(&name) {
        bail!(
            "{}: {key} `{name}` cannot name a plugin file: use letters, digits, `-` and `_`",
            manifest.display()
        );
    }
    Ok(name)
}

/// `PROJECT/build`, where the intermediate files go.
fn staging_dir(project: &Path) -> anyhow::Result<PathBuf> {
    let staging = absolute(project)?.join("build");
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    Ok(staging)
}

/// Writes the embedded contract; returns its folder.
fn write_wit(staging: &Path) -> anyhow::Result<PathBuf> {
    let wit = staging.join("wit");
    std::fs::create_dir_all(&wit).with_context(|| format!("cannot create {}", wit.display()))?;
    std::fs::write(wit.join("plugin.wit"), PLUGIN_WIT)
        .with_context(|| format!("cannot write {}", wit.display()))?;
    Ok(wit)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// `target` as an ES module specifier relative to `from`.
fn relative_import(from: &Path, target: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    let joined = parts.join("/");
    if joined.starts_with("..") {
        joined
    } else {
        format!("./{joined}")
    }
}

/// Runs a build step, its output shown; an error names the step.
fn run(mut command: Command, step: &str) -> anyhow::Result<()> {
    let status = command
        // Its output goes to stderr: stdout says only what was built.
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("cannot run {step}"))?;
    if !status.success() {
        bail!("{step} failed (see its messages above)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_imports_the_main_module_relative_to_the_staging_folder() {
        assert_eq!(
            relative_import(Path::new("/p/build"), Path::new("/p/src/plugin.js")),
            "../src/plugin.js"
        );
        assert_eq!(
            relative_import(Path::new("/p/build"), Path::new("/p/build/x.js")),
            "./x.js"
        );
    }

    #[test]
    fn a_folder_is_told_by_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let error = Language::of(dir.path()).unwrap_err().to_string();
        assert!(error.contains("pyproject.toml"), "{error}");
        std::fs::write(dir.path().join("package.json"), "{}").unwrap();
        assert_eq!(Language::of(dir.path()).unwrap(), Language::JavaScript);
        std::fs::write(dir.path().join("pyproject.toml"), "").unwrap();
        assert_eq!(Language::of(dir.path()).unwrap(), Language::Python);
    }

    #[test]
    fn a_python_project_without_its_table_is_refused_with_the_key_to_add() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[project]\nname = \"p\"\n",
        )
        .unwrap();
        let error = build_python(dir.path(), false).unwrap_err().to_string();
        assert!(error.contains("[tool.switchyard]"), "{error}");
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[project]\nname = \"p\"\n[tool.switchyard]\nkind = \"balancer\"\n",
        )
        .unwrap();
        let error = build_python(dir.path(), false).unwrap_err().to_string();
        assert!(error.contains("src/plugin.py does not exist"), "{error}");
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[project]\nname = \"p\"\n[tool.switchyard]\nkind = \"router\"\n",
        )
        .unwrap();
        let error = build_python(dir.path(), false).unwrap_err().to_string();
        assert!(error.contains("router"), "{error}");
    }

    #[test]
    fn a_name_that_cannot_name_a_file_is_refused() {
        let manifest = Path::new("package.json");
        assert!(plugin_name(Some("@scope/x".into()), manifest, "\"name\"").is_err());
        assert!(plugin_name(None, manifest, "\"name\"").is_err());
        assert_eq!(
            plugin_name(Some("js-least-request".into()), manifest, "\"name\"").unwrap(),
            "js-least-request"
        );
    }
}
