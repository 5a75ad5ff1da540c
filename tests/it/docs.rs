//! The documentation against the code: every configuration key the parser accepts is in the
//! man page psentinel.cfg(5) and in docs/configuration.md, and every link in README.md and
//! docs/ leads to a file of the repository (and to a heading of it, when it names one).

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The keys of `const NAME: &[&str] = &[...]` in src/config.rs: the lists the parser checks
/// every key against, so a key added there without documentation fails here.
fn accepted_keys(name: &str) -> Vec<String> {
    let src = read("src/config.rs");
    let start = format!("const {name}: &[&str] = &[");
    let at = src
        .find(&start)
        .unwrap_or_else(|| panic!("src/config.rs no longer has `{start}`: update this test"));
    let list = &src[at + start.len()..];
    let list = &list[..list.find("];").expect("the key list ends with `];`")];
    let keys: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(keys.len() > 3, "{name}: too few keys found: {keys:?}");
    keys
}

/// The roff text of one `.SH` section of the man page.
fn man_section<'a>(page: &'a str, title: &str) -> &'a str {
    let head = format!(".SH \"{title}\"\n");
    let at = page
        .find(&head)
        .unwrap_or_else(|| panic!("psentinel.cfg.5 has no section {title}"))
        + head.len();
    let rest = &page[at..];
    &rest[..rest.find("\n.SH ").unwrap_or(rest.len())]
}

#[test]
fn man_page_documents_every_config_key() {
    let page = read("man/psentinel.cfg.5");
    for (list, section) in [
        ("SERVICE_KEYS", "SERVICE KEYS"),
        ("GENERAL_KEYS", "GENERAL KEYS"),
    ] {
        let text = man_section(&page, section);
        let missing: Vec<String> = accepted_keys(list)
            .into_iter()
            .filter(|k| !text.contains(&format!(".TP\n.B {k}\n")))
            .collect();
        assert!(
            missing.is_empty(),
            "man/psentinel.cfg.5, section {section}, has no entry (.TP, .B KEY) for {missing:?}"
        );
    }
}

#[test]
fn configuration_page_documents_every_config_key() {
    let page = read("docs/configuration.md");
    let keys = accepted_keys("SERVICE_KEYS")
        .into_iter()
        .chain(accepted_keys("GENERAL_KEYS"));
    let missing: Vec<String> = keys.filter(|k| !page.contains(&format!("`{k}`"))).collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not mention {missing:?}"
    );
}

/// Markdown links `](file#anchor)` that are not web addresses, as (file, anchor); an empty
/// file is the page itself.
fn local_links(text: &str) -> Vec<(&str, Option<&str>)> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            let mut parts = target.splitn(2, '#');
            let file = parts.next().unwrap_or("");
            (!target.contains("://")).then_some((file, parts.next()))
        })
        .collect()
}

/// The anchors a Markdown renderer gives a page's headings: lower case, spaces to `-`, every
/// other character but letters, digits, `-` and `_` dropped.
fn anchors(page: &str) -> Vec<String> {
    let mut in_code = false;
    page.lines()
        .filter(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            !in_code && l.starts_with('#')
        })
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

#[test]
fn doc_links_lead_to_files_of_the_repository() {
    let mut pages = vec![PathBuf::from("README.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        pages.push(Path::new("docs").join(e.file_name()));
    }
    let repo = root().canonicalize().unwrap();
    let mut broken = Vec::new();
    for page in &pages {
        let text = read(page.to_str().unwrap());
        for (file, anchor) in local_links(&text) {
            let target = match file {
                "" => root().join(page),
                f => root().join(page.parent().unwrap()).join(f),
            };
            let found = match target.canonicalize() {
                Ok(t) if t.starts_with(&repo) => match anchor {
                    None => true,
                    Some(a) => std::fs::read_to_string(&t)
                        .is_ok_and(|body| anchors(&body).iter().any(|h| h == a)),
                },
                _ => false,
            };
            if !found {
                let anchor = anchor.map(|a| format!("#{a}")).unwrap_or_default();
                broken.push(format!("{}: {file}{anchor}", page.display()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to no file (or heading) of the repository: {broken:#?}"
    );
}

/// The tour in README.md shows the tour's files as they are: the `[ourapp]` section of
/// examples/tour/psentinel.cfg and the backend of examples/tour/haproxy.cfg.
#[test]
fn readme_tour_shows_the_tour_files() {
    let readme = read("README.md");
    for (file, from) in [
        ("examples/tour/psentinel.cfg", "[ourapp]\n"),
        ("examples/tour/haproxy.cfg", "backend ourapp\n"),
    ] {
        let text = read(file);
        let at = text
            .find(from)
            .unwrap_or_else(|| panic!("{file} has no {from}"));
        let part = &text[at..];
        let part = part[..part.find("\n\n").unwrap_or(part.len())].trim_end();
        assert!(
            readme.contains(part),
            "README.md's tour does not show {file} as it is:\n{part}"
        );
    }
}
