//! `docs/sdk.md`, the SDK reference readable without building anything,
//! names every public item of the crate: a method in a section whose
//! heading names its type, anything else anywhere, always in backticks.
//! The items are read from the sources (`src/*.rs`), up to their tests.

use std::collections::BTreeSet;
use std::path::Path;

/// A public item: its name, and the type it is a method of (`None` for a
/// type, function, constant, module, macro or re-export).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    owner: Option<String>,
    name: String,
}

/// The identifier at the start of `text`.
fn ident(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The type an `impl` line is about, or `None` for a trait impl.
fn impl_type(line: &str) -> Option<String> {
    if line.contains(" for ") {
        return None;
    }
    let mut rest = line.strip_prefix("impl")?;
    if rest.starts_with('<') {
        let mut depth = 0;
        let end = rest.char_indices().find_map(|(i, c)| {
            depth += match c {
                '<' => 1,
                '>' => -1,
                _ => 0,
            };
            (depth == 0).then_some(i)
        })?;
        rest = &rest[end + 1..];
    }
    Some(ident(rest.trim_start()))
}

/// The public items of one source file.
fn items_of(source: &str, items: &mut BTreeSet<Item>) {
    let mut owner: Option<String> = None;
    let mut in_use = false;
    let mut add = |owner: Option<String>, name: String| {
        if !name.is_empty() && !name.starts_with("__") {
            items.insert(Item { owner, name });
        }
    };
    for line in source.lines() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        if in_use || line.starts_with("pub use ") {
            // `pub use a::b::{C, D};`, `pub use a::b as c;`, over lines.
            let names = line.rsplit(['{', ':']).next().unwrap_or_default();
            for name in names.split(',') {
                let name = name.trim().trim_end_matches(['}', ';']);
                add(None, ident(name.rsplit(" as ").next().unwrap_or(name)));
            }
            in_use = !line.trim_end().ends_with(';');
            continue;
        }
        if line == "}" {
            owner = None;
        } else if line.starts_with("impl") {
            owner = impl_type(line);
        } else if let Some(rest) = line.strip_prefix("pub trait ") {
            owner = Some(ident(rest));
            add(None, ident(rest));
        } else if let Some(rest) = line.strip_prefix("macro_rules! ") {
            add(None, ident(rest));
        } else if let Some(rest) = line.strip_prefix("pub ") {
            let rest = rest.strip_prefix("const fn ").unwrap_or(rest);
            let name = rest.split_whitespace().nth(1).unwrap_or_default();
            add(None, ident(name));
        } else if let Some(owner) = &owner {
            let method = line
                .strip_prefix("    pub const fn ")
                .or_else(|| line.strip_prefix("    pub fn "))
                .or_else(|| line.strip_prefix("    fn ").filter(|_| owner == "Watch"));
            if let Some(method) = method {
                add(Some(owner.clone()), ident(method));
            }
        }
    }
}

/// The identifiers inside backticks in `text`.
fn named_in(text: &str) -> BTreeSet<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|span| span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn docs_sdk_md_names_every_public_item() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs_path = crate_dir.join("../../docs/sdk.md");
    let docs = std::fs::read_to_string(&docs_path)
        .unwrap_or_else(|e| panic!("{}: {e}", docs_path.display()));
    let mut items = BTreeSet::new();
    for entry in std::fs::read_dir(crate_dir.join("src")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            items_of(&std::fs::read_to_string(&path).unwrap(), &mut items);
        }
    }
    // Sections: each heading with the text up to the next heading.
    let mut sections: Vec<(BTreeSet<String>, String)> = Vec::new();
    for line in docs.lines() {
        if line.starts_with('#') {
            sections.push((named_in(line), String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    let everywhere = named_in(&docs);
    let missing: Vec<String> = items
        .iter()
        .filter(|item| match &item.owner {
            None => !everywhere.contains(&item.name),
            Some(owner) => !sections.iter().any(|(heading, text)| {
                heading.contains(owner) && named_in(text).contains(&item.name)
            }),
        })
        .map(|item| match &item.owner {
            Some(owner) => format!("{owner}::{} (under a heading naming `{owner}`)", item.name),
            None => item.name.clone(),
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/sdk.md does not name these public items of the SDK; describe them there:\n  {}",
        missing.join("\n  ")
    );
    // The parse found the crate's surface, not an empty list.
    for expected in ["Watch", "Conditions", "SnapshotBuilder", "Client", "bytes"] {
        assert!(
            items.iter().any(|i| i.name == expected),
            "{expected}: {items:?}"
        );
    }
    assert!(
        items
            .iter()
            .any(|i| i.owner.as_deref() == Some("Client") && i.name == "field_u64")
    );
    assert!(
        items
            .iter()
            .any(|i| i.owner.as_deref() == Some("Watch") && i.name == "observe")
    );
}
