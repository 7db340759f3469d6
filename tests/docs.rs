//! The documentation holds together: every relative link of the README, the changelog and
//! `docs/` names a file of the repository (and an anchor, a heading of that file), and the README
//! stays a first screen.

// Test helpers fail the test by panicking: unwrap and expect are their assertions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read docs") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root().join("README.md"), root().join("CHANGELOG.md")];
    walk(&root().join("docs"), &mut files);
    files
}

/// GitHub's anchor of a heading: lower case, spaces to dashes, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The targets of `](...)` links in `text`, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_owned());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        for link in links(&text) {
            if link.starts_with("http://") || link.starts_with("https://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = link.split_once('#').map_or((link.as_str(), None), |(p, f)| (p, Some(f)));
            let target = if path.is_empty() { file.clone() } else { file.parent().expect("dir").join(path) };
            if !target.exists() {
                broken.push(format!("{}: {link} (no {})", file.display(), target.display()));
                continue;
            }
            if let Some(fragment) = fragment
                && target.is_file()
            {
                let headings: Vec<String> =
                    std::fs::read_to_string(&target).unwrap_or_default().lines().filter(|l| l.starts_with('#')).map(|l| anchor(l.trim_start_matches('#'))).collect();
                if !headings.iter().any(|h| h == fragment) {
                    broken.push(format!("{}: {link} (no heading #{fragment})", file.display()));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} links read: the reader is broken");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_first_screen() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let lines = readme.lines().count();
    assert!(lines <= 200, "README.md has {lines} lines: move the detail into docs/");
    assert!(readme.contains("make demo") && readme.contains("make test"), "the two commands");
}

#[test]
fn the_link_reader_sees_links_and_anchors() {
    assert_eq!(links("a [x](b.md#c) and [y](https://e) \n```\n[z](not)\n```"), vec!["b.md#c".to_owned(), "https://e".to_owned()]);
    assert_eq!(anchor(" Off-site: destinations and the restic strategy"), "off-site-destinations-and-the-restic-strategy");
}
