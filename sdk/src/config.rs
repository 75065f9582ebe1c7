//! Reading a plugin's config: the JSON the host passes to `configure`.

use serde::de::DeserializeOwned;

/// Parses `config` into `T`, naming the key at fault in the error, ready to
/// return from `configure`. Give `T` `#[serde(deny_unknown_fields)]` so a
/// mistyped key is refused rather than ignored, and `#[serde(default)]` for
/// optional keys.
///
/// ```
/// use serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// #[serde(deny_unknown_fields, default)]
/// struct Options {
///     choices: u32,
/// }
///
/// impl Default for Options {
///     fn default() -> Self {
///         Options { choices: 2 }
///     }
/// }
///
/// let options: Options = switchyard_sdk::config::parse("{}").unwrap();
/// assert_eq!(options.choices, 2);
///
/// let error = switchyard_sdk::config::parse::<Options>(r#"{"choices": "two"}"#).unwrap_err();
/// assert!(error.starts_with("config key `choices`: invalid type"), "{error}");
///
/// let error = switchyard_sdk::config::parse::<Options>(r#"{"choises": 3}"#).unwrap_err();
/// assert!(error.contains("unknown field `choises`"), "{error}");
///
/// let error = switchyard_sdk::config::parse::<Options>("[1, 2]").unwrap_err();
/// assert!(error.contains("must be a table"), "{error}");
/// ```
pub fn parse<T: DeserializeOwned>(config: &str) -> Result<T, String> {
    let trimmed = config.trim_start();
    if !trimmed.is_empty() && !trimmed.starts_with('{') {
        let shown: String = config.chars().take(40).collect();
        return Err(format!(
            "config must be a table (a JSON object), got `{shown}`"
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_str(config);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        if error.inner().is_syntax() || error.inner().is_eof() {
            format!("config is not JSON: {}", error.inner())
        } else if path.is_empty() || path == "." {
            format!("config: {}", error.inner())
        } else {
            format!("config key `{path}`: {}", error.inner())
        }
    })
}

/// A config that takes no options: only `{}` is accepted.
///
/// ```
/// use switchyard_sdk::config::{parse, NoOptions};
/// assert!(parse::<NoOptions>("{}").is_ok());
/// assert!(parse::<NoOptions>(r#"{"speed": 1}"#).unwrap_err().contains("unknown field `speed`"));
/// ```
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoOptions {}
