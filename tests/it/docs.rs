//! The documentation against the code: every configuration key the parser accepts is in the
//! man page psentinel.cfg(5) and in docs/configuration.md, and every link in README.md and
//! docs/ leads to a file of the repository (and to a heading of it, when it names one); the
//! tour in README.md runs as printed.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The keys of `const NAME: &[&str] = &[...]`: the lists the parser checks every key
/// against, so a key added there without documentation fails here. SERVICE_KEYS is in
/// src/config/service.rs, GENERAL_KEYS in src/config.rs.
fn accepted_keys(name: &str) -> Vec<String> {
    let file = match name {
        "SERVICE_KEYS" => "src/config/service.rs",
        _ => "src/config.rs",
    };
    let src = read(file);
    let start = format!("const {name}: &[&str] = &[");
    let at = src
        .find(&start)
        .unwrap_or_else(|| panic!("{file} no longer has `{start}`: update this test"));
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

/// One step of the tour: a command as README.md prints it, and the output it shows (None for
/// the commands of a `sh` block, which show none).
struct Step {
    command: String,
    shown: Option<Vec<String>>,
}

/// The commands of README.md's tour in order: every line of its `sh` blocks, and every `$ `
/// line of its other blocks with the output shown under it.
fn tour_steps(readme: &str) -> Vec<Step> {
    let start = readme
        .find("## Five-minute tour")
        .expect("README.md has the tour");
    let tour = &readme[start..];
    let tour = &tour[..tour[3..].find("\n## ").map_or(tour.len(), |e| e + 3)];
    let mut steps = Vec::new();
    for block in tour.split("```").skip(1).step_by(2) {
        let (lang, body) = block.split_once('\n').unwrap_or((block, ""));
        if lang == "sh" {
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                steps.push(Step {
                    command: line.to_string(),
                    shown: None,
                });
            }
        } else if body.starts_with("$ ") {
            for part in body.split("$ ").skip(1) {
                let mut lines = part.lines().map(str::to_string);
                let command = lines.next().unwrap();
                steps.push(Step {
                    command,
                    shown: Some(lines.collect()),
                });
            }
        }
    }
    steps
}

/// What may differ between the run the README shows and this one: numbers and times, the
/// host's name (HAProxy's node) and the user's.
fn masked(line: &str, host: &str, user: &str) -> String {
    let line = line
        .replace(&format!("HAProxy {host}"), "HAProxy HOST")
        .replace(&format!("({host} "), "(HOST ")
        .replace(&format!("by {user} "), "by USER ");
    let mut out = String::new();
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('N') {
                out.push('N');
            }
        } else {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

/// Whether `actual` holds the `shown` lines: all of them in order where the README shows the
/// whole output, in order among others where it elides lines with `...`. Four requests over
/// two servers may start with either, so their order is not compared.
fn shows(shown: &[String], actual: &str, host: &str, user: &str) -> bool {
    let actual: Vec<String> = actual.lines().map(|l| masked(l, host, user)).collect();
    let shown: Vec<String> = shown
        .iter()
        .map(|l| masked(l, "vm", "alice"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    if shown.iter().any(|l| l.trim() == "...") {
        let mut rest = actual.iter();
        return shown
            .iter()
            .filter(|l| l.trim() != "...")
            .all(|want| rest.any(|got| got == want));
    }
    let (mut a, mut s) = (actual, shown);
    if s.iter().all(|l| l.starts_with("hello from ")) {
        a.sort();
        s.sort();
    }
    a == s
}

/// Stops what the tour started, also when the test fails half-way.
struct TourCleanup(PathBuf);

impl Drop for TourCleanup {
    fn drop(&mut self) {
        for pid_file in ["target/tour/haproxy.pid", "target/tour/psentinel.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.0.join(pid_file)) {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

/// Every command of README.md's tour, run as printed from a copy of the tour's files (only
/// the ports are free ones chosen now), exits 0 and prints what the README shows. Not run:
/// `cargo build`, since the test runs the binary cargo built for it.
#[test]
fn readme_tour_runs_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path();
    let ports: Vec<(String, String)> = ["18000", "18001", "18002", "48080"]
        .iter()
        .map(|p| (p.to_string(), crate::support::free_port().to_string()))
        .collect();
    let substitute = |text: &str| {
        ports.iter().fold(text.to_string(), |t, (from, to)| {
            t.replace(from.as_str(), to)
        })
    };
    for file in [
        "examples/tour/psentinel.cfg",
        "examples/tour/haproxy.cfg",
        "examples/checks/http-ok.sh",
    ] {
        let to = top.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, substitute(&read(file))).unwrap();
        std::fs::set_permissions(
            &to,
            std::fs::metadata(root().join(file)).unwrap().permissions(),
        )
        .unwrap();
    }
    std::fs::create_dir_all(top.join("target/debug")).unwrap();
    std::os::unix::fs::symlink(crate::support::BIN, top.join("target/debug/psentinel")).unwrap();
    let _cleanup = TourCleanup(top.to_path_buf());

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .unwrap()
        .unwrap()
        .name;
    // `export` lines carry over to the commands after them, as in the reader's shell.
    let mut exports = String::new();
    let steps = tour_steps(&read("README.md"));
    assert!(steps.len() > 10, "too few commands found in the tour");
    for step in steps {
        if step.command.starts_with("cargo build") {
            continue;
        }
        let command = substitute(&step.command);
        if command.starts_with("export ") {
            exports.push_str(&command);
            exports.push('\n');
        }
        let run = || {
            let out = std::process::Command::new("bash")
                .arg("-c")
                // One stream, as on a terminal: --wait's progress (stderr) and its outcome
                // (stdout) in the order they come.
                .arg(format!("exec 2>&1\n{exports}{command}"))
                .current_dir(top)
                .output()
                .unwrap();
            let output = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success(), output)
        };
        let Some(shown) = step.shown else {
            let (ok, output) = run();
            assert!(ok, "`{}` failed:\n{output}", step.command);
            continue;
        };
        // What only reads is asked again until it shows the state the README shows ("a few
        // seconds later"); what changes state runs once.
        let reads = command.starts_with("psentinel -c status") || command.starts_with("for ");
        let mut last = String::new();
        let found = crate::support::eventually(
            &format!("`{}` printing what README.md shows", step.command),
            crate::support::DEADLINE,
            || {
                let (ok, output) = run();
                let good = ok && shows(&shown, &output, host, &user);
                last = output;
                (good || !reads).then_some(good)
            },
        );
        assert!(
            found,
            "`{}` printed:\n{last}\nREADME.md shows:\n{}",
            step.command,
            shown.join("\n")
        );
    }
}
