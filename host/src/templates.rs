//! `switchyard plugin new`: a plugin project written from a template embedded
//! in the binary, ready for its language's test runner and `switchyard
//! plugin build`.
//!
//! A Rust project is a standalone Cargo crate with a `[workspace]` of its
//! own, so it builds wherever it is written; a JavaScript project an npm
//! package tested with `node --test`; a Python project a pyproject tested
//! with pytest. Each depends on its language's SDK by path: the SDKs are not
//! published, so the project points at a checkout, by default the one this
//! binary was built from (`sdk/`, `sdk/js`, `sdk/python` beside `host/`).

use std::fmt;
use std::path::{Path, PathBuf};

/// The kind of plugin: one per world. Also what a JavaScript or Python
/// project's `kind` key says (`balancer`, `health`, `recovery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Picks an endpoint per request.
    Balancer,
    /// Judges one endpoint through the host's probes.
    Health,
    /// Decides what follows a failed attempt.
    Recovery,
}

impl Kind {
    /// The SDK feature that selects the kind's world.
    fn feature(self) -> &'static str {
        match self {
            Kind::Balancer => "balancer",
            Kind::Health => "health-check",
            Kind::Recovery => "recovery",
        }
    }

    /// The WIT world a plugin of the kind targets.
    pub fn world(self) -> &'static str {
        match self {
            Kind::Balancer => "balancer-plugin",
            Kind::Health => "health-plugin",
            Kind::Recovery => "recovery-plugin",
        }
    }

    /// The key `plugin build` reads the kind from in a JavaScript or Python
    /// project.
    fn key(self) -> &'static str {
        match self {
            Kind::Balancer => "balancer",
            Kind::Health => "health",
            Kind::Recovery => "recovery",
        }
    }

    /// The template's `src/lib.rs`.
    fn lib_rs(self) -> &'static str {
        match self {
            Kind::Balancer => include_str!("../templates/rust/balancer/lib.rs"),
            Kind::Health => include_str!("../templates/rust/health/lib.rs"),
            Kind::Recovery => include_str!("../templates/rust/recovery/lib.rs"),
        }
    }

    /// The Python template's plugin and its tests.
    fn python(self) -> (&'static str, &'static str) {
        match self {
            Kind::Balancer => (
                include_str!("../templates/python/balancer/plugin.py"),
                include_str!("../templates/python/balancer/test_plugin.py"),
            ),
            Kind::Health => (
                include_str!("../templates/python/health/plugin.py"),
                include_str!("../templates/python/health/test_plugin.py"),
            ),
            Kind::Recovery => (
                include_str!("../templates/python/recovery/plugin.py"),
                include_str!("../templates/python/recovery/test_plugin.py"),
            ),
        }
    }

    /// The JavaScript template's plugin and its tests.
    fn js(self) -> (&'static str, &'static str) {
        match self {
            Kind::Balancer => (
                include_str!("../templates/js/balancer/plugin.js"),
                include_str!("../templates/js/balancer/plugin.test.js"),
            ),
            Kind::Health => (
                include_str!("../templates/js/health/plugin.js"),
                include_str!("../templates/js/health/plugin.test.js"),
            ),
            Kind::Recovery => (
                include_str!("../templates/js/recovery/plugin.js"),
                include_str!("../templates/js/recovery/plugin.test.js"),
            ),
        }
    }

    /// A pool using the plugin, for the project's README.
    fn pool(self) -> &'static str {
        match self {
            Kind::Balancer => {
                "[[pools]]\nname = \"web\"\n\
                 balancer = { plugin = \"{{name}}\", config = { window = 8 } }\n\
                 endpoints = [{ address = \"127.0.0.1:8081\" }, { address = \"127.0.0.1:8082\" }]"
            }
            Kind::Health => {
                "[[pools]]\nname = \"web\"\n\
                 health = { plugin = \"{{name}}\", interval_ms = 2000, timeout_ms = 1000, rise = 2, fall = 3, config = { path = \"/healthz\" } }\n\
                 endpoints = [{ address = \"127.0.0.1:8081\" }, { address = \"127.0.0.1:8082\" }]"
            }
            Kind::Recovery => {
                "[[pools]]\nname = \"web\"\n\
                 recovery = { plugin = \"{{name}}\", config = { retries = 1 } }\n\
                 endpoints = [{ address = \"127.0.0.1:8081\" }, { address = \"127.0.0.1:8082\" }]"
            }
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Balancer => "balancer",
            Kind::Health => "health check",
            Kind::Recovery => "recovery",
        })
    }
}

/// The language of the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with `switchyard-sdk` (`sdk/`).
    Rust,
    /// JavaScript, with `@switchyard/sdk` (`sdk/js`).
    Js,
    /// Python, with the `switchyard` package (`sdk/python`).
    Python,
}

impl Lang {
    /// The file that tells an SDK folder of the language.
    fn sdk_marker(self) -> &'static str {
        match self {
            Lang::Rust => "Cargo.toml",
            Lang::Js => "package.json",
            Lang::Python => "switchyard/__init__.py",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
            Lang::Python => "Python",
        })
    }
}

/// What `switchyard plugin new` was asked for.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// The kind of plugin.
    pub kind: Kind,
    /// Its language.
    pub lang: Lang,
    /// The crate's name, which is also the built file's (`NAME.wasm`).
    pub name: String,
    /// Where the project goes; default `./NAME`.
    pub dir: Option<PathBuf>,
    /// The SDK's folder; default [`default_sdk`].
    pub sdk: Option<PathBuf>,
}

/// Why a project was not written.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name cannot be a crate's.
    #[error("`{name}` is not a valid plugin name: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// No SDK at the path given or assumed.
    #[error(
        "no {lang} SDK at {}: pass `--sdk PATH` with the `{folder}` folder of a Switchyard checkout",
        path.display()
    )]
    SdkMissing {
        /// The language.
        lang: Lang,
        /// The folder looked in.
        path: PathBuf,
        /// The SDK's folder in a checkout.
        folder: &'static str,
    },
    /// The target folder already holds something.
    #[error("{} exists and is not empty: choose another NAME or `--dir`", path.display())]
    NotEmpty {
        /// The target folder.
        path: PathBuf,
    },
    /// A file or folder could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl NewError {
    /// Whether the command line asked for something impossible (exit 2)
    /// rather than the disk failing (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, NewError::Write { .. })
    }
}

/// The SDK of `lang` in the checkout this binary was built from.
pub fn default_sdk(lang: Lang) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(sdk_folder(lang))
}

/// Where `lang`'s SDK is in a checkout.
fn sdk_folder(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "sdk",
        Lang::Js => "sdk/js",
        Lang::Python => "sdk/python",
    }
}

/// Names Cargo or Rust keep for themselves, and the template's own
/// dependencies, which a package of the same name would shadow.
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
    "alloc",
    "core",
    "std",
    "test",
    "proc_macro",
    "serde",
    "switchyard_sdk",
];

/// The longest name accepted.
const MAX_NAME_LEN: usize = 64;

/// Checks that `name` is a crate name Cargo accepts: an ASCII letter, then
/// letters, digits, `-` or `_`, not a keyword or reserved crate name. It is
/// the plugin's file name whatever the language, so every language is held
/// to it; npm also wants it in lower case.
pub fn validate_name_for(name: &str, lang: Lang) -> Result<(), NewError> {
    validate_name(name)?;
    if lang == Lang::Js && name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(NewError::InvalidName {
            name: name.to_string(),
            why: "npm package names are lower case".into(),
        });
    }
    Ok(())
}

/// Checks that `name` is a crate name Cargo accepts: an ASCII letter, then
/// letters, digits, `-` or `_`, not a keyword or reserved crate name.
pub fn validate_name(name: &str) -> Result<(), NewError> {
    let invalid = |why: &str| NewError::InvalidName {
        name: name.to_string(),
        why: why.to_string(),
    };
    let Some(first) = name.chars().next() else {
        return Err(invalid("it is empty"));
    };
    if !first.is_ascii_alphabetic() {
        return Err(invalid("it must start with an ASCII letter"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(invalid(&format!(
            "`{bad}` is not allowed; use ASCII letters, digits, `-` and `_`"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(&format!(
            "it is longer than {MAX_NAME_LEN} characters"
        )));
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        return Err(invalid(
            "it is reserved by Rust or Cargo, or is a dependency's name",
        ));
    }
    Ok(())
}

/// Writes the project and returns its folder.
pub fn new_plugin(request: &NewRequest) -> Result<PathBuf, NewError> {
    let lang = request.lang;
    validate_name_for(&request.name, lang)?;
    let sdk = request.sdk.clone().unwrap_or_else(|| default_sdk(lang));
    let missing = |path: PathBuf| NewError::SdkMissing {
        lang,
        path,
        folder: sdk_folder(lang),
    };
    if !sdk.join(lang.sdk_marker()).is_file() {
        return Err(missing(sdk));
    }
    let sdk = sdk.canonicalize().map_err(|_| missing(sdk.clone()))?;
    let dir = request
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&request.name));
    if let Ok(mut entries) = std::fs::read_dir(&dir) {
        if entries.next().is_some() {
            return Err(NewError::NotEmpty { path: dir });
        }
    } else if dir.exists() {
        return Err(NewError::NotEmpty { path: dir });
    }
    for (path, text) in render(lang, request.kind, &request.name, &sdk) {
        let path = dir.join(path);
        let write = |path: &Path| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, &text)
        };
        write(&path).map_err(|source| NewError::Write { path, source })?;
    }
    Ok(dir)
}

/// The project's files, relative to its folder, with every placeholder
/// filled in.
fn render(lang: Lang, kind: Kind, name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let sdk = sdk.display().to_string();
    // The path as the manifest's syntax needs it: a TOML basic string's
    // escapes, a JSON string's.
    let sdk_in_manifest = match lang {
        Lang::Rust | Lang::Python => sdk.replace('\\', "\\\\").replace('"', "\\\""),
        Lang::Js => {
            let quoted = serde_json::to_string(&sdk).expect("a string");
            quoted[1..quoted.len() - 1].to_string()
        }
    };
    let fill = |template: &str, in_manifest: bool| {
        template
            .replace("{{pool}}", kind.pool())
            .replace("{{kind}}", &kind.to_string())
            .replace("{{kind_key}}", kind.key())
            .replace("{{feature}}", kind.feature())
            .replace("{{sdk}}", if in_manifest { &sdk_in_manifest } else { &sdk })
            .replace("{{name}}", name)
    };
    match lang {
        Lang::Rust => vec![
            (
                "Cargo.toml",
                fill(include_str!("../templates/rust/Cargo.toml"), true),
            ),
            (
                "README.md",
                fill(include_str!("../templates/rust/README.md"), false),
            ),
            (
                ".gitignore",
                fill(include_str!("../templates/rust/gitignore"), false),
            ),
            ("src/lib.rs", fill(kind.lib_rs(), false)),
        ],
        Lang::Js => {
            let (plugin, test) = kind.js();
            vec![
                (
                    "package.json",
                    fill(include_str!("../templates/js/package.json"), true),
                ),
                (
                    "README.md",
                    fill(include_str!("../templates/js/README.md"), false),
                ),
                (
                    ".gitignore",
                    fill(include_str!("../templates/js/gitignore"), false),
                ),
                ("src/plugin.js", fill(plugin, false)),
                ("test/plugin.test.js", fill(test, false)),
            ]
        }
        Lang::Python => {
            let (plugin, test) = kind.python();
            vec![
                (
                    "pyproject.toml",
                    fill(include_str!("../templates/python/pyproject.toml"), true),
                ),
                (
                    "README.md",
                    fill(include_str!("../templates/python/README.md"), false),
                ),
                (
                    ".gitignore",
                    fill(include_str!("../templates/python/gitignore"), false),
                ),
                ("src/plugin.py", fill(plugin, false)),
                ("tests/test_plugin.py", fill(test, false)),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [Kind; 3] = [Kind::Balancer, Kind::Health, Kind::Recovery];
    const LANGS: [Lang; 3] = [Lang::Rust, Lang::Js, Lang::Python];

    fn request(kind: Kind, dir: &Path) -> NewRequest {
        NewRequest {
            kind,
            lang: Lang::Rust,
            name: "my-plugin".into(),
            dir: Some(dir.to_path_buf()),
            sdk: None,
        }
    }

    #[test]
    fn crate_names_are_checked() {
        for good in ["a", "my-plugin", "p2c_v2", "Least"] {
            validate_name(good).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("2fast", "start with an ASCII letter"),
            ("-x", "start with an ASCII letter"),
            ("my plugin", "` ` is not allowed"),
            ("my.plugin", "`.` is not allowed"),
            ("café", "`é` is not allowed"),
            ("fn", "reserved"),
            ("proc-macro", "reserved"),
            ("switchyard-sdk", "reserved"),
        ] {
            let error = validate_name(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
            assert!(error.contains("is not a valid plugin name"), "{error}");
        }
        assert!(validate_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn every_placeholder_is_filled_and_each_kind_has_its_feature() {
        for kind in KINDS {
            let files = render(
                Lang::Rust,
                kind,
                "my-plugin",
                Path::new("/opt/switchyard/sdk"),
            );
            let names: Vec<_> = files.iter().map(|(path, _)| *path).collect();
            assert_eq!(
                names,
                ["Cargo.toml", "README.md", ".gitignore", "src/lib.rs"]
            );
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{kind:?} {path}: {text}");
            }
            let manifest = &files[0].1;
            assert!(manifest.contains("name = \"my-plugin\""), "{manifest}");
            assert!(manifest.contains(&format!(
                "switchyard-sdk = {{ path = \"/opt/switchyard/sdk\", features = [\"{}\"] }}",
                kind.feature()
            )));
            assert!(manifest.contains("crate-type = [\"cdylib\", \"rlib\"]"));
            assert!(manifest.trim_end().ends_with("[workspace]"));
            let readme = &files[1].1;
            assert!(readme.contains("plugin = \"my-plugin\""), "{readme}");
            assert!(readme.contains("switchyard plugin build . --out ../plugins"));
            assert!(files[3].1.starts_with("//! `my-plugin`: "));
        }
    }

    #[test]
    fn the_readme_pool_is_a_valid_config() {
        for (lang, kind) in LANGS.into_iter().flat_map(|l| KINDS.map(|k| (l, k))) {
            let files = render(lang, kind, "my-plugin", Path::new("/sdk"));
            let readme = &files[1].1;
            let pool = readme
                .split("```toml\n")
                .nth(1)
                .and_then(|rest| rest.split("```").next())
                .expect("a toml block");
            let text =
                format!("[proxy]\nlisten = \"127.0.0.1:0\"\n{pool}[[routes]]\npool = \"web\"\n");
            let config = crate::config::Config::parse(&text, "README.md")
                .unwrap_or_else(|error| panic!("{kind:?}: {error}\n{text}"));
            let plugins: Vec<_> = config
                .plugin_keys()
                .into_iter()
                .map(|(_, name)| name)
                .collect();
            assert_eq!(plugins, ["my-plugin"], "{kind:?}");
        }
    }

    #[test]
    fn a_project_is_written_into_a_missing_or_empty_folder() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("new");
        let written = new_plugin(&request(Kind::Health, &dir)).unwrap();
        assert_eq!(written, dir);
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_health_check!"), "{lib}");
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let sdk = default_sdk(Lang::Rust).canonicalize().unwrap();
        assert!(manifest.contains(&sdk.display().to_string()), "{manifest}");

        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        new_plugin(&request(Kind::Recovery, &empty)).unwrap();
        assert!(empty.join("src/lib.rs").is_file());
    }

    #[test]
    fn a_folder_with_anything_in_it_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("notes.txt"), "mine").unwrap();
        let error = new_plugin(&request(Kind::Balancer, root.path())).unwrap_err();
        assert!(matches!(error, NewError::NotEmpty { .. }), "{error}");
        assert!(error.to_string().contains("is not empty"), "{error}");
        assert_eq!(
            std::fs::read_to_string(root.path().join("notes.txt")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_missing_sdk_names_the_option() {
        let root = tempfile::tempdir().unwrap();
        let mut asked = request(Kind::Balancer, &root.path().join("p"));
        asked.sdk = Some(root.path().join("nowhere"));
        let error = new_plugin(&asked).unwrap_err();
        assert!(error.is_usage());
        assert!(error.to_string().contains("pass `--sdk PATH`"), "{error}");
        assert!(!root.path().join("p").exists());
    }

    #[test]
    fn a_javascript_project_names_its_kind_and_the_sdk_as_json_says() {
        for kind in KINDS {
            let files = render(
                Lang::Js,
                kind,
                "my-plugin",
                Path::new("/opt/sw \"x\"/sdk/js"),
            );
            let names: Vec<_> = files.iter().map(|(path, _)| *path).collect();
            assert_eq!(
                names,
                [
                    "package.json",
                    "README.md",
                    ".gitignore",
                    "src/plugin.js",
                    "test/plugin.test.js"
                ]
            );
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{kind:?} {path}: {text}");
            }
            let manifest: serde_json::Value = serde_json::from_str(&files[0].1).unwrap();
            assert_eq!(manifest["name"], "my-plugin");
            assert_eq!(manifest["switchyard"]["kind"], kind.key());
            assert_eq!(
                manifest["devDependencies"]["@switchyard/sdk"],
                "file:/opt/sw \"x\"/sdk/js"
            );
        }
        let error = validate_name_for("MyPlugin", Lang::Js).unwrap_err();
        assert!(error.to_string().contains("lower case"), "{error}");
    }

    #[test]
    fn a_python_project_names_its_kind_and_the_sdk_as_toml_says() {
        for kind in KINDS {
            let files = render(
                Lang::Python,
                kind,
                "my-plugin",
                Path::new("/opt/sw \"x\"/sdk/python"),
            );
            let names: Vec<_> = files.iter().map(|(path, _)| *path).collect();
            assert_eq!(
                names,
                [
                    "pyproject.toml",
                    "README.md",
                    ".gitignore",
                    "src/plugin.py",
                    "tests/test_plugin.py"
                ]
            );
            for (path, text) in &files {
                assert!(!text.contains("{{"), "{kind:?} {path}: {text}");
            }
            let manifest: toml::Value = toml::from_str(&files[0].1).unwrap();
            assert_eq!(manifest["project"]["name"].as_str(), Some("my-plugin"));
            let switchyard = &manifest["tool"]["switchyard"];
            assert_eq!(switchyard["kind"].as_str(), Some(kind.key()));
            assert_eq!(switchyard["sdk"].as_str(), Some("/opt/sw \"x\"/sdk/python"));
        }
    }

    #[test]
    fn a_missing_sdk_names_the_language_and_its_folder() {
        let root = tempfile::tempdir().unwrap();
        let mut asked = request(Kind::Balancer, &root.path().join("p"));
        asked.lang = Lang::Js;
        asked.sdk = Some(root.path().join("nowhere"));
        let error = new_plugin(&asked).unwrap_err().to_string();
        assert!(error.starts_with("no JavaScript SDK at "), "{error}");
        assert!(error.contains("the `sdk/js` folder"), "{error}");
        assert!(!root.path().join("p").exists());
    }
}
