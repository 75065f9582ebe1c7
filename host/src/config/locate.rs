//! Finds the line of a key path such as `pools[0].endpoints[1].weight` in the
//! TOML source, so validation errors can point at it.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(index) = rest[1..end].parse() {
                out.push(Segment::Index(index));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

/// The 1-based line where `path` is written, or where its nearest written
/// parent is (a missing key is reported at its table).
pub fn line_of(source: &str, path: &str) -> Option<usize> {
    let root = DeTable::parse(source).ok()?;
    let mut span = root.span();
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for segment in segments(path) {
        match segment {
            Segment::Key(key) => {
                let current = table?;
                let Some((found_key, found)) = current.iter().find(|(k, _)| k.get_ref() == key)
                else {
                    break;
                };
                span = found_key.span();
                value = Some(found);
            }
            Segment::Index(index) => {
                let Some(DeValue::Array(items)) = value.map(Spanned::get_ref) else {
                    break;
                };
                let Some(item) = items.get(index) else { break };
                span = item.span();
                value = Some(item);
            }
        }
        table = match value.map(Spanned::get_ref) {
            Some(DeValue::Table(inner)) => Some(inner),
            _ => None,
        };
    }
    Some(source[..span.start.min(source.len())].matches('\n').count() + 1)
}
