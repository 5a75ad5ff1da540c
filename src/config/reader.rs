//! One section's keys as the key parsers see them, gathered from every file that has a
//! section of that name, with the context every error message needs.
//!
//! The merge is systemd's drop-in rule: the main file, then each fragment in order; a key set
//! again in a later file replaces the earlier value, keys not set again keep theirs. Within
//! one file a key given twice is still an error. Each value remembers the file and line it
//! came from, so an error names the file that set it.

use super::{ConfigError, Origin};
use crate::ini;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// Where something is: (index of the file, main file = 0; line). Errors are reported in this
/// order.
pub(super) type Pos = (usize, usize);

/// The part of one service (or `[general]`) that one file holds.
pub(super) struct Piece<'a> {
    pub file: usize,
    pub section: &'a ini::Section,
}

struct Value<'a> {
    value: &'a str,
    at: Pos,
}

pub(super) struct SectionReader<'a> {
    /// Every file of the configuration, by index.
    files: &'a [PathBuf],
    pub section: &'a str,
    /// The header of the section's first piece.
    first: Pos,
    /// The files of the pieces, in order, each once.
    piece_files: Vec<usize>,
    /// The value in force of each key: the last file's.
    values: HashMap<&'a str, Value<'a>>,
    /// Every entry, with its file, except those given twice within one piece.
    entries: Vec<(usize, &'a ini::Entry)>,
    errors: RefCell<Vec<(Pos, ConfigError)>>,
}

impl<'a> SectionReader<'a> {
    pub fn new(files: &'a [PathBuf], section: &'a str, pieces: &[Piece<'a>]) -> Self {
        let first = pieces.first().map_or((0, 0), |p| (p.file, p.section.line));
        let mut s = SectionReader {
            files,
            section,
            first,
            piece_files: Vec::new(),
            values: HashMap::new(),
            entries: Vec::new(),
            errors: RefCell::new(Vec::new()),
        };
        for p in pieces {
            if !s.piece_files.contains(&p.file) {
                s.piece_files.push(p.file);
            }
            let mut here: HashMap<&str, ()> = HashMap::new();
            for e in &p.section.entries {
                if here.insert(e.key.as_str(), ()).is_some() {
                    let err =
                        s.error_in(p.file, &e.key, &e.value, "key given twice in this section");
                    s.push((p.file, e.line), err);
                    continue;
                }
                s.entries.push((p.file, e));
                s.values.insert(
                    e.key.as_str(),
                    Value {
                        value: e.value.as_str(),
                        at: (p.file, e.line),
                    },
                );
            }
        }
        s
    }

    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.values.get(key).map(|v| v.value)
    }

    /// Where the value in force of `key` was set; the section's first header without one.
    pub fn pos(&self, key: &str) -> Pos {
        self.values.get(key).map_or(self.first, |v| v.at)
    }

    /// The files this section comes from, and which one set each key.
    pub fn origin(&self) -> Origin {
        Origin {
            files: self
                .piece_files
                .iter()
                .map(|i| self.files[*i].clone())
                .collect(),
            keys: self
                .values
                .iter()
                .map(|(k, v)| (k.to_string(), self.files[v.at.0].clone()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    pub fn into_errors(self) -> Vec<(Pos, ConfigError)> {
        self.errors.into_inner()
    }

    fn push(&self, at: Pos, e: ConfigError) {
        self.errors.borrow_mut().push((at, e));
    }

    pub fn reject_unknown(&self, known: &[&str]) {
        for (file, e) in &self.entries {
            if !known.contains(&e.key.as_str()) {
                let hint = closest(&e.key, known)
                    .or_else(|| synonym(&e.key, known))
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                let err = self.error_in(*file, &e.key, &e.value, &format!("unknown key{hint}"));
                self.push((*file, e.line), err);
            }
        }
    }

    /// The parsed value of `key`, None when absent or bad (a bad one is recorded).
    pub fn opt<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> Option<T> {
        self.opt_words(key, &[], parse)
    }

    /// As [`Self::opt`] for a key whose value may be one of `words`: a bad value close to
    /// one of them names it ("did you mean 'nagios'?"), as an unknown key names a known one.
    pub fn opt_words<T>(
        &self,
        key: &str,
        words: &[&str],
        parse: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> Option<T> {
        let v = self.get(key)?;
        parse(v)
            .map_err(|why| match closest_word(v, words) {
                Some(w) => self.value_err(key, v, &format!("{why} (did you mean '{w}'?)")),
                None => self.value_err(key, v, why),
            })
            .ok()
    }

    pub fn parse_or<T>(
        &self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> T {
        self.opt(key, parse).unwrap_or(default)
    }

    /// [`Self::opt_words`] with a default.
    pub fn words_or<T>(
        &self,
        key: &str,
        default: T,
        words: &[&str],
        parse: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> T {
        self.opt_words(key, words, parse).unwrap_or(default)
    }

    pub fn path_or(&self, key: &str, default: PathBuf) -> PathBuf {
        self.parse_or(key, default, |v| {
            if v.is_empty() {
                Err("expected a path")
            } else {
                Ok(PathBuf::from(v))
            }
        })
    }

    fn error_in(&self, file: usize, key: &str, value: &str, why: &str) -> ConfigError {
        ConfigError::Value {
            file: self.files[file].clone(),
            section: self.section.into(),
            key: key.into(),
            value: value.into(),
            why: why.into(),
        }
    }

    /// Records an error on `key`, in the file (and at the line) that set it.
    pub fn value_err(&self, key: &str, value: &str, why: &str) {
        let at = self.pos(key);
        self.push(at, self.error_in(at.0, key, value, why));
    }

    /// Records an error on the whole section, at the header that first defined it.
    pub fn section_err(&self, why: &str) {
        let e = ConfigError::Section {
            file: self.files[self.first.0].clone(),
            section: self.section.into(),
            why: why.into(),
        };
        self.push(self.first, e);
    }
}

/// The known key (or option) a typo most likely meant (edit distance at most 2).
pub(crate) fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Names other tools (or a guess) give our keys, too far from them for [`closest`] to find:
/// `control_socket` means `sock_file`. Only a key of the section being read is offered.
const SYNONYMS: &[(&str, &str)] = &[
    ("control_socket", "sock_file"),
    ("control_sock", "sock_file"),
    ("socket", "sock_file"),
    ("socket_file", "sock_file"),
    ("state_directory", "state_dir"),
    ("group", "control_group"),
    ("check", "check_script"),
    ("script", "check_script"),
    ("command", "check_script"),
    ("check_command", "check_script"),
    ("interval", "check_script_interval"),
    ("check_interval", "check_script_interval"),
    ("timeout", "check_timeout"),
    ("check_script_timeout", "check_timeout"),
    ("listen", "bind"),
    ("address", "bind"),
    ("agent", "agent_port"),
    ("agent_check_port", "agent_port"),
    ("systemd_unit", "unit"),
];

fn synonym<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let (_, meant) = SYNONYMS.iter().find(|(other, _)| *other == key)?;
    known.iter().copied().find(|k| k == meant)
}

/// The word a misspelt value most likely meant: any case, at most 2 edits away, and fewer
/// edits than the value has letters (`x` is 1 edit from `1` but means nothing).
fn closest_word<'k>(value: &str, words: &[&'k str]) -> Option<&'k str> {
    let value = value.to_ascii_lowercase();
    words
        .iter()
        .map(|w| (edit_distance(&value, w), *w))
        .filter(|(d, _)| *d <= 2 && *d < value.chars().count())
        .min()
        .map(|(_, w)| w)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
