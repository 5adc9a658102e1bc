//! The docs hold together: every relative link and `#anchor` in README.md
//! and docs/*.md leads to a file of the checkout and, for an anchor into a
//! Markdown file, to one of its headings (as GitHub makes anchors of them)
//! or an explicit `<a id="...">` / `<a name="...">`; README links every
//! page. External `http(s)://` links are not fetched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use crate::support::repo;

/// README.md and every Markdown page under docs/, relative to the checkout.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| Path::new("docs").join(p.file_name().unwrap()))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The lines of `text` outside fenced code blocks, with their numbers
/// (1-based).
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m))
                if f == m
                    && trimmed
                        .trim_end()
                        .chars()
                        .all(|c| c == m.as_bytes()[0] as char) =>
            {
                fence = None
            }
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// `line` without its code spans (`` `...` ``), which hold no links.
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(open) = rest.find('`') {
        out.push_str(&rest[..open]);
        let ticks = rest[open..].chars().take_while(|&c| c == '`').count();
        let after = &rest[open + ticks..];
        match after.find(&"`".repeat(ticks)) {
            Some(close) => rest = &after[close + ticks..],
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `[text](target)` as `text`: what GitHub shows of a link in a heading.
fn link_texts(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        let Some(end) = rest[at..].find(')') else {
            break;
        };
        let open = rest[..at].rfind('[').unwrap_or(at);
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..at]);
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    out
}

/// GitHub's anchor of a heading: lower case, every character but letters,
/// digits, `-`, `_` and spaces removed (backticks and other markup too),
/// spaces turned into `-`.
fn slug(heading: &str) -> String {
    link_texts(heading)
        .trim()
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|&c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text: its headings' slugs (a repeated one
/// gets `-1`, `-2`, ... as on GitHub) and its `<a id>` / `<a name>`.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = slug(&line[hashes + 1..]);
            let n = seen.entry(base.clone()).or_default();
            out.insert(if *n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            });
            *n += 1;
        }
        for attr in ["<a id=\"", "<a name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(attr) {
                let value = &rest[at + attr.len()..];
                let end = value.find('"').unwrap_or(value.len());
                out.insert(value[..end].to_owned());
                rest = &value[end..];
            }
        }
    }
    out
}

/// The link targets of a Markdown text, with their line numbers: inline
/// links and images (`[text](target)`, `![alt](target)`), reference
/// definitions (`[name]: target`) and HTML `href`/`src`, outside code.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let line = without_code(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let target = &rest[at + 2..];
            let end = target.find(')').unwrap_or(target.len());
            let target = target[..end].split_whitespace().next().unwrap_or("");
            out.push((n, target.trim_matches(['<', '>']).to_owned()));
            rest = &rest[at + 2 + end..];
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('[')
            && let Some((_, target)) = trimmed.split_once("]: ")
        {
            out.push((n, target.split_whitespace().next().unwrap_or("").to_owned()));
        }
        for attr in ["href=\"", "src=\""] {
            let mut rest = line.as_str();
            while let Some(at) = rest.find(attr) {
                let value = &rest[at + attr.len()..];
                let end = value.find('"').unwrap_or(value.len());
                out.push((n, value[..end].to_owned()));
                rest = &value[end..];
            }
        }
    }
    out
}

/// `path` with `.` and `..` taken out; `None` when it climbs out of the
/// checkout.
fn normal(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// What is wrong with the link `target` of `page` (relative to the
/// checkout), or `None` when it resolves.
fn broken(page: &Path, target: &str) -> Option<String> {
    if target.is_empty() {
        return Some("an empty link".to_owned());
    }
    // http:, https:, mailto: ...: not fetched.
    if target.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    }) {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let file = if path.is_empty() {
        page.to_path_buf()
    } else {
        match normal(&page.parent().unwrap().join(path)) {
            Some(file) => file,
            None => return Some(format!("`{path}` leads out of the checkout")),
        }
    };
    if !repo().join(&file).exists() {
        return Some(format!("no file {}", file.display()));
    }
    let anchor = anchor?;
    if file.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let text = std::fs::read_to_string(repo().join(&file)).unwrap();
    if anchors(&text).contains(anchor) {
        return None;
    }
    Some(format!(
        "no heading of {} has the anchor `#{anchor}` (GitHub's: lower case, spaces as `-`, \
         punctuation but `-` and `_` removed), and no <a id=\"{anchor}\">",
        file.display()
    ))
}

/// Every relative link and anchor in README.md and docs/*.md resolves.
#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(repo().join(&page)).unwrap();
        for (line, target) in links(&text) {
            checked += 1;
            if let Some(why) = broken(&page, &target) {
                wrong.push(format!("{}:{line}: ({target}): {why}", page.display()));
            }
        }
    }
    assert!(checked > 100, "only {checked} links found");
    assert!(
        wrong.is_empty(),
        "broken links; fix the link or the heading it names:\n  {}",
        wrong.join("\n  ")
    );
}

/// README links every page under docs/.
#[test]
fn readme_links_every_page() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let linked: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|(_, t)| t.split('#').next().unwrap().to_owned())
        .collect();
    let missing: Vec<String> = pages()
        .into_iter()
        .skip(1)
        .map(|p| p.display().to_string())
        .filter(|p| !linked.contains(p))
        .collect();
    assert!(missing.is_empty(), "README.md does not link {missing:?}");
}

/// The checker itself: GitHub's slugs, headings and links in code left
/// out, repeated headings numbered, explicit anchors.
#[test]
fn the_checker_reads_markdown_as_github_does() {
    assert_eq!(
        slug("The SDK: `lookout-watcher` (`plugins/sdk`)"),
        "the-sdk-lookout-watcher-pluginssdk"
    );
    assert_eq!(
        slug("`lookout check FILE.wasm [--config NAME.toml]`"),
        "lookout-check-filewasm---config-nametoml"
    );
    assert_eq!(slug("`/healthz` rules"), "healthz-rules");
    assert_eq!(slug("See [the SDK](sdk.md) here"), "see-the-sdk-here");
    let text = "# Top\n\n## Two words\n\n```toml\n# not a heading\n[a](#nowhere)\n```\n\n\
                ## Two words\n\n<a id=\"here\"></a> see [x](#top), `[y](#code)` and \
                ![i](status.png)\n[ref]: other.md#part\n";
    let found = anchors(text);
    assert_eq!(
        found,
        ["here", "top", "two-words", "two-words-1"]
            .map(str::to_owned)
            .into()
    );
    let targets: Vec<String> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(targets, ["#top", "status.png", "other.md#part"]);
    assert!(broken(Path::new("README.md"), "https://example.com/x#y").is_none());
    assert!(broken(Path::new("README.md"), "docs/nothing.md").is_some());
    assert!(broken(Path::new("docs/sdk.md"), "../../outside").is_some());
}
