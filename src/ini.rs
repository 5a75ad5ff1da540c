//! The INI layer of the configuration: text to sections of `key = value` lines, each with its
//! line number, and every line that is none of these (not only the first).
//!
//! - `[name]` starts a section; keys before the first section belong to no section.
//! - `key = value` (or `key: value`); the key and the value are trimmed.
//! - Lines whose first non-blank character is `#` or `;` are comments. So is the rest of a line
//!   from a `#` or `;` that follows a blank, outside single and double quotes:
//!   `port = 48080 # probe port`, `check_script = /bin/sh -c 'a; b' # deep check`. A marker
//!   inside a word (`a#b`) or inside quotes is kept, as the shell keeps it.
//! - Otherwise values are kept verbatim: quotes and backslashes belong to check_script's
//!   shell-style words, not to this layer.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// None: keys that stand before any `[section]`.
    pub name: Option<String>,
    pub line: usize,
    pub entries: Vec<Entry>,
}

/// A line that is neither a section, a key nor a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub text: String,
    pub why: &'static str,
}

/// Reads every line; returns the sections in file order and the lines it could not read.
pub fn parse(text: &str) -> (Vec<Section>, Vec<SyntaxError>) {
    let mut sections: Vec<Section> = Vec::new();
    let mut errors = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = strip_comment(raw).trim();
        if content.is_empty() {
            continue;
        }
        let mut error = |why| {
            errors.push(SyntaxError {
                line,
                text: raw.trim().to_string(),
                why,
            })
        };
        if let Some(rest) = content.strip_prefix('[') {
            match rest.strip_suffix(']') {
                Some(name) => sections.push(Section {
                    name: Some(name.trim().to_string()),
                    line,
                    entries: Vec::new(),
                }),
                None => error("a section header is [NAME], with nothing after the ']'"),
            }
            continue;
        }
        let Some(at) = content.find(['=', ':']) else {
            error("expected 'key = value', '[section]' or a comment ('#' or ';')");
            continue;
        };
        let key = content[..at].trim();
        if key.is_empty() {
            error("no key before the '='");
            continue;
        }
        if sections.is_empty() {
            sections.push(Section {
                name: None,
                line,
                entries: Vec::new(),
            });
        }
        let section = sections.last_mut().expect("pushed above");
        section.entries.push(Entry {
            key: key.to_string(),
            value: content[at + 1..].trim().to_string(),
            line,
        });
    }
    (sections, errors)
}

/// The line up to a `#` or `;` that starts a comment (see the module doc).
fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with(['#', ';']) {
        return "";
    }
    let (mut single, mut double, mut escaped) = (false, false, false);
    let mut after_blank = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if single {
            single = c != '\'';
        } else if c == '\\' {
            escaped = true;
        } else if double {
            double = c != '"';
        } else if c == '\'' {
            single = true;
        } else if c == '"' {
            double = true;
        } else if (c == '#' || c == ';') && after_blank {
            return &line[..i];
        }
        after_blank = c == ' ' || c == '\t';
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<(Option<String>, String, String)> {
        let (sections, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        sections
            .into_iter()
            .flat_map(|s| {
                let name = s.name.clone();
                s.entries
                    .into_iter()
                    .map(move |e| (name.clone(), e.key, e.value))
            })
            .collect()
    }

    #[test]
    fn trailing_comments_after_a_blank_outside_quotes() {
        for (value, want) in [
            ("48090 # probe port", "48090"),
            ("48090\t; probe port", "48090"),
            ("48090#x", "48090#x"),
            (
                "/bin/sh -c 'exit 0 # kept' # dropped",
                "/bin/sh -c 'exit 0 # kept'",
            ),
            ("/bin/sh -c \"a ; b\" ;dropped", "/bin/sh -c \"a ; b\""),
            ("/bin/echo it\\'s # dropped", "/bin/echo it\\'s"),
            (" # only a comment", ""),
            ("#x", "#x"),
        ] {
            let got = entries(&format!("[a]\nk={value}\n"));
            assert_eq!(got[0].2, want, "{value:?}");
        }
    }

    #[test]
    fn sections_keys_comments_and_line_numbers() {
        let (sections, errors) = parse(
            "\u{feff}; top\ntop = 1\n[web] # the site\n  # indented comment\nport: 80\n\n[db]\n",
        );
        assert!(errors.is_empty());
        assert_eq!(sections.len(), 3);
        assert_eq!(sections[0].name, None);
        assert_eq!(sections[1].name.as_deref(), Some("web"));
        assert_eq!(sections[1].line, 3);
        assert_eq!(
            sections[1].entries,
            [Entry {
                key: "port".into(),
                value: "80".into(),
                line: 5
            }]
        );
        assert!(sections[2].entries.is_empty());
    }

    #[test]
    fn every_bad_line_is_reported() {
        let (_, errors) = parse("[a\nport=1\njunk\n= 3\n");
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [1, 3, 4]);
        assert_eq!(errors[1].text, "junk");
    }
}
