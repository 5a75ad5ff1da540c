//! Configuration: INI files -> validated, typed [`Config`].
//!
//! The configuration is the main file plus the `*.cfg` fragments of its drop-in directory
//! ([`sources`]). Parsing happens in three layers: [`crate::ini`] turns each file's text into
//! sections of string pairs (trailing comments removed), the sections of one service are
//! merged across files ([`reader`]), then [`Config::from_sources`] checks every key and value
//! and builds typed fields (a service's keys: [`service`]). Every error names the file, the
//! section, the key, the value and why (a line that is no key, its line number), so
//! `psentinel -t` output is enough to fix a file, and every error of every file is reported
//! at once, the main file's first, each file's in line order. There is no "best effort": one
//! bad value in one fragment rejects the whole configuration, at start-up and on reload
//! (where the running configuration stays); only `-t` looks further into a configuration
//! with errors ([`Config::load_checked`]), to report what else is wrong.

mod reader;
mod service;
pub mod sources;

use crate::ini;
use crate::model::valid_service_name;
pub(crate) use reader::closest;
use reader::{Piece, Pos, SectionReader};
pub use service::{parse_bool, Origin, ServiceConfig};
use service::{parse_service, SERVICE_KEYS};
pub use sources::{dropin_dir, Sources};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_CONFIG: &str = "/etc/psentinel/psentinel.cfg";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: line {line}: '{text}': {why}")]
    Syntax {
        file: PathBuf,
        line: usize,
        text: String,
        why: String,
    },
    #[error("{file}: [{section}] {key} = '{value}': {why}")]
    Value {
        file: PathBuf,
        section: String,
        key: String,
        value: String,
        why: String,
    },
    #[error("{file}: [{section}]: {why}")]
    Section {
        file: PathBuf,
        section: String,
        why: String,
    },
    #[error("{file}: {why}")]
    File { file: PathBuf, why: String },
    /// More than one of the above, in file order.
    #[error("{}", several(.file, .errors))]
    Several {
        file: PathBuf,
        errors: Vec<ConfigError>,
    },
}

impl ConfigError {
    /// `errors` as one error: None when there is none, the one, or [`ConfigError::Several`].
    pub fn gather(file: &Path, mut errors: Vec<ConfigError>) -> Option<ConfigError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ConfigError::Several {
                file: file.to_path_buf(),
                errors,
            }),
        }
    }
}

fn several(file: &Path, errors: &[ConfigError]) -> String {
    let mut out = format!("{}: {} errors:", file.display(), errors.len());
    for e in errors {
        out.push_str(&format!("\n  {e}"));
    }
    out
}

/// Where the D-Bus objects go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbusMode {
    System,
    Session,
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct General {
    pub log_level: u8,
    pub pid_file: PathBuf,
    pub sock_file: PathBuf,
    pub state_dir: PathBuf,
    pub control_group: String,
    pub dbus: DbusMode,
    pub metrics_listen: Option<SocketAddr>,
    /// Floor of the silence alarm's threshold (README "Observability"); read at start.
    pub silence_min: Duration,
}

impl Default for General {
    fn default() -> Self {
        General {
            log_level: 2,
            pid_file: "/run/psentinel/psentinel.pid".into(),
            sock_file: "/run/psentinel/psentinel.sock".into(),
            state_dir: "/var/lib/psentinel".into(),
            control_group: "psentinel".into(),
            dbus: DbusMode::System,
            metrics_listen: None,
            silence_min: Duration::from_secs(30),
        }
    }
}

impl General {
    /// The keys whose value differs in `other`, in the order of the section's documentation:
    /// what a reload names when `[general]` changed (it takes effect at the next restart).
    pub fn changed_keys(&self, other: &General) -> Vec<&'static str> {
        // Spelled out field by field: a new key that is not listed here does not compile.
        let General {
            log_level,
            pid_file,
            sock_file,
            state_dir,
            control_group,
            dbus,
            metrics_listen,
            silence_min,
        } = self;
        let differs = [
            ("log_level", *log_level != other.log_level),
            ("pid_file", *pid_file != other.pid_file),
            ("sock_file", *sock_file != other.sock_file),
            ("state_dir", *state_dir != other.state_dir),
            ("control_group", *control_group != other.control_group),
            ("dbus", *dbus != other.dbus),
            ("metrics_listen", *metrics_listen != other.metrics_listen),
            ("silence_min", *silence_min != other.silence_min),
        ];
        differs
            .into_iter()
            .filter(|(_, d)| *d)
            .map(|(k, _)| k)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The main file.
    pub file: PathBuf,
    pub general: General,
    /// By name; names are unique.
    pub services: BTreeMap<String, ServiceConfig>,
    /// The drop-in fragments read after the main file, in order (shared: every snapshot
    /// names them).
    pub fragments: Arc<[PathBuf]>,
    /// Files of the drop-in directory that were not read (not `*.cfg`, or hidden).
    pub ignored: Vec<PathBuf>,
}

const GENERAL_KEYS: &[&str] = &[
    "log_level",
    "pid_file",
    "sock_file",
    "state_dir",
    "control_group",
    "dbus",
    "metrics_listen",
    "silence_min",
];

impl Config {
    /// Reads the file and its drop-in fragments ([`sources`]) and checks them together.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::read(file)?)
    }

    /// One file's text, without a drop-in directory.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::single(text, file))
    }

    /// What `-t` needs to report everything in one run: the configuration as far as it
    /// could be read, and every error of every file (fragments that cannot be read first).
    /// The configuration is only the one to run when there is no error: a service whose port
    /// is bad has port 0, a bad value its default. Err: the main file cannot be read.
    pub fn load_checked(file: &Path) -> Result<(Config, Vec<ConfigError>), ConfigError> {
        let (sources, mut errors) = Sources::read_readable(file)?;
        let (config, more) = Config::checked(&sources);
        errors.extend(more);
        Ok((config, errors))
    }

    /// Every file's sections merged (see [`reader`]) and every key checked; all the errors
    /// of all the files at once, the main file's first, each file's in line order.
    pub fn from_sources(sources: &Sources) -> Result<Config, ConfigError> {
        let (config, errors) = Config::checked(sources);
        match ConfigError::gather(&sources.main.path, errors) {
            None => Ok(config),
            Some(e) => Err(e),
        }
    }

    /// [`Config::from_sources`]'s work: the configuration and the errors, in order.
    fn checked(sources: &Sources) -> (Config, Vec<ConfigError>) {
        let files: Vec<PathBuf> = sources.all().map(|s| s.path.clone()).collect();
        let mut errors: Vec<(Pos, ConfigError)> = Vec::new();
        let parsed: Vec<Vec<ini::Section>> = sources
            .all()
            .enumerate()
            .map(|(i, s)| {
                let (sections, syntax) = ini::parse(&s.text);
                errors.extend(syntax.into_iter().map(|e| {
                    let err = ConfigError::Syntax {
                        file: s.path.clone(),
                        line: e.line,
                        text: e.text,
                        why: e.why.into(),
                    };
                    ((i, e.line), err)
                }));
                sections
            })
            .collect();
        let mut config = Config::from_ini(&files, &parsed, &mut errors);
        config.fragments = files[1..].into();
        config.ignored = sources.ignored.clone();
        errors.sort_by_key(|(at, _)| *at);
        (config, errors.into_iter().map(|(_, e)| e).collect())
    }

    /// `sock_file` of `file`, read leniently: the client must find the daemon even while the
    /// rest of the file is being edited (to send `reload` and hear what is wrong). Only the
    /// main file: `[general]` is not allowed in fragments.
    pub fn sock_file_of(file: &Path) -> Option<PathBuf> {
        let text = std::fs::read_to_string(file).ok()?;
        let (sections, _) = ini::parse(&text);
        let v = sections
            .iter()
            .filter(|s| s.name.as_deref() == Some("general"))
            .flat_map(|s| &s.entries)
            .find(|e| e.key == "sock_file")?;
        (!v.value.is_empty()).then(|| PathBuf::from(&v.value))
    }

    /// Checks every section of every file (`sections[i]` is `files[i]`'s); errors go to
    /// `errors` with their place. The result is only meaningful when no error was added.
    ///
    /// A service's sections are gathered from all files before its keys are read, so a
    /// fragment may set any key of a service defined earlier (its `port` too). `[general]`
    /// is the main file's alone: the daemon's socket, state and who may change what are not
    /// for a fragment an application's package drops in to change.
    fn from_ini(
        files: &[PathBuf],
        sections: &[Vec<ini::Section>],
        errors: &mut Vec<(Pos, ConfigError)>,
    ) -> Config {
        let mut general: Vec<Piece> = Vec::new();
        // Services in the order they were first defined, each with its pieces.
        let mut order: Vec<&str> = Vec::new();
        let mut pieces: HashMap<&str, Vec<Piece>> = HashMap::new();
        for (file, secs) in sections.iter().enumerate() {
            let mut here: HashMap<&str, ()> = HashMap::new();
            for sec in secs {
                let path = files[file].clone();
                let Some(section) = sec.name.as_deref() else {
                    let e = &sec.entries[0];
                    let why = format!("'{} = {}' stands before any [section]", e.key, e.value);
                    errors.push(((file, e.line), ConfigError::File { file: path, why }));
                    continue;
                };
                let mut refuse = |why: String| {
                    let err = ConfigError::Section {
                        file: path.clone(),
                        section: section.into(),
                        why,
                    };
                    errors.push(((file, sec.line), err));
                };
                if here.insert(section, ()).is_some() {
                    refuse(if section == "general" {
                        "section appears twice".into()
                    } else {
                        "service defined twice in this file".into()
                    });
                } else if section == "general" && file > 0 {
                    refuse(format!(
                        "[general] belongs in the main file {}: a drop-in fragment holds \
                         services only",
                        files[0].display()
                    ));
                } else if section == "general" {
                    general.push(Piece { file, section: sec });
                } else if !valid_service_name(section) {
                    refuse("a service name may hold only letters, digits, '_', '-' and '.'".into());
                } else {
                    let list = pieces.entry(section).or_insert_with(|| {
                        order.push(section);
                        Vec::new()
                    });
                    list.push(Piece { file, section: sec });
                }
            }
        }

        let g = SectionReader::new(files, "general", &general);
        g.reject_unknown(GENERAL_KEYS);
        let general = parse_general(&g);
        errors.extend(g.into_errors());

        let mut services = BTreeMap::new();
        // Each port, claimed where it is set: the first claim in file and line order keeps
        // it, so the error lands on the file that took a port already in use.
        let mut claims: Vec<(Pos, u16, &'static str, &str)> = Vec::new();
        for name in order {
            let s = SectionReader::new(files, name, &pieces[name]);
            s.reject_unknown(SERVICE_KEYS);
            let svc = parse_service(&s);
            // Port 0: missing or bad, already an error; not a claim.
            let port = Some(svc.port).filter(|p| *p != 0);
            for (key, port) in [("port", port), ("agent_port", svc.agent_port)] {
                if let Some(port) = port {
                    claims.push((s.pos(key), port, key, name));
                }
            }
            services.insert(name.to_string(), svc);
            errors.extend(s.into_errors());
        }
        claims.sort();
        let mut ports: HashMap<u16, (&str, usize)> = HashMap::new();
        for (at, port, key, name) in claims {
            let Some((other, other_file)) = ports.get(&port).copied() else {
                ports.insert(port, (name, at.0));
                continue;
            };
            let whose = if other_file == at.0 {
                format!("[{other}]")
            } else {
                format!("[{other}] of {}", files[other_file].display())
            };
            let err = ConfigError::Value {
                file: files[at.0].clone(),
                section: name.into(),
                key: key.into(),
                value: port.to_string(),
                why: format!("port already used by {whose}"),
            };
            errors.push((at, err));
        }
        Config {
            file: files[0].clone(),
            general,
            services,
            fragments: Arc::from([]),
            ignored: Vec::new(),
        }
    }
}

/// `log_level`'s names, by number.
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

fn parse_general(s: &SectionReader) -> General {
    let d = General::default();
    General {
        // A level by number (the original psentinel's) or by name (what the journal shows).
        log_level: s.words_or("log_level", d.log_level, &LOG_LEVELS, |v| {
            v.parse::<u8>()
                .ok()
                .or_else(|| LOG_LEVELS.iter().position(|n| *n == v).map(|i| i as u8))
                .filter(|l| *l <= 4)
                .ok_or("expected 0..4 or error, warn, info, debug, trace")
        }),
        pid_file: s.path_or("pid_file", d.pid_file),
        sock_file: s.path_or("sock_file", d.sock_file),
        state_dir: s.path_or("state_dir", d.state_dir),
        control_group: s.parse_or("control_group", d.control_group, |v| {
            if v.is_empty() {
                Err("expected a group name")
            } else {
                Ok(v.to_string())
            }
        }),
        dbus: s.words_or("dbus", d.dbus, &["system", "session", "off"], |v| {
            match v.to_ascii_lowercase().as_str() {
                "system" => Ok(DbusMode::System),
                "session" => Ok(DbusMode::Session),
                "off" | "no" | "none" => Ok(DbusMode::Off),
                _ => Err("expected system, session or off"),
            }
        }),
        metrics_listen: s.opt("metrics_listen", |v| {
            v.parse::<SocketAddr>()
                .map_err(|_| "expected ADDR:PORT, e.g. 127.0.0.1:9901 or [::1]:9901")
        }),
        silence_min: s.parse_or("silence_min", d.silence_min, seconds),
    }
}

fn seconds(v: &str) -> Result<Duration, &'static str> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err("expected a number of seconds greater than 0 (at most 86400)"),
    }
}

impl fmt::Display for DbusMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbusMode::System => "system",
            DbusMode::Session => "session",
            DbusMode::Off => "off",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::MinCapacity;

    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.cfg"))
    }

    pub(super) fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_types() {
        let c = parse("[a]\nport=8080\n").unwrap();
        let a = &c.services["a"];
        assert_eq!(a.port, 8080);
        assert_eq!(a.interval, Duration::from_secs(10));
        assert_eq!(a.timeout, a.interval);
        assert_eq!((a.rise, a.fall), (1, 1));
        assert_eq!((a.haproxy_fall, a.haproxy_rise), (3, 2));
        assert_eq!((a.disabled_status, a.paused_status), (503, 503));
        assert!(a.check.is_none() && !a.pausable && !a.start_paused);
        assert!(a.bind.is_none() && a.agent_port.is_none());
        assert_eq!(a.min_capacity, MinCapacity::Percent(0));
        let c = parse("[a]\nport=1\nmin_capacity=50%\n[b]\nport=2\nmin_capacity=off\n").unwrap();
        assert_eq!(c.services["a"].min_capacity, MinCapacity::Percent(50));
        assert_eq!(c.services["b"].min_capacity, MinCapacity::Off);
        assert!(err("[a]\nport=1\nmin_capacity=101\n").contains("expected a percentage 0-100"));
        // The documented defaults as literals: comparing with General::default() would only
        // compare the parser with itself.
        let g = &c.general;
        assert_eq!(g.log_level, 2);
        assert_eq!(g.pid_file, Path::new("/run/psentinel/psentinel.pid"));
        assert_eq!(g.sock_file, Path::new("/run/psentinel/psentinel.sock"));
        assert_eq!(g.state_dir, Path::new("/var/lib/psentinel"));
        assert_eq!(g.control_group, "psentinel");
        assert_eq!(g.dbus, DbusMode::System);
        assert_eq!(g.metrics_listen, None);
        assert_eq!(g.silence_min, Duration::from_secs(30));
    }

    #[test]
    fn errors_name_file_section_key_value_and_why() {
        let cases = [
            (
                "[a]\npausable=yes\n",
                "test.cfg: [a]: missing required key 'port'",
            ),
            (
                "[a]\nport=70000\n",
                "[a] port = '70000': expected a TCP port",
            ),
            ("[a]\nport=0\n", "[a] port = '0'"),
            (
                "[a]\nport=1\n[b]\nport=1\n",
                "[b] port = '1': port already used by [a]",
            ),
            (
                "[a]\nport=1\nagent_port=1\n",
                "[a] agent_port = '1': port already used by [a]",
            ),
            (
                "[a]\nport=1\ncheck_scrpt=/x\n",
                "[a] check_scrpt = '/x': unknown key (did you mean 'check_script'?)",
            ),
            (
                "[a]\nport=1\ncheck_script_interval=0\n",
                "[a] check_script_interval = '0'",
            ),
            ("[a]\nport=1\nrise=0\n", "[a] rise = '0'"),
            ("[general]\nlog_level=7\n", "[general] log_level = '7'"),
            (
                "[general]\nlog_level=debgu\n",
                "[general] log_level = 'debgu': expected 0..4 or error, warn, info, debug, trace (did you mean 'debug'?)",
            ),
            ("[general]\ndbus=maybe\n", "[general] dbus = 'maybe'"),
            (
                "[general]\ncontrol_socket=/s\n",
                "[general] control_socket = '/s': unknown key (did you mean 'sock_file'?)",
            ),
            (
                "[a]\nport=1\ninterval=5\n",
                "[a] interval = '5': unknown key (did you mean 'check_script_interval'?)",
            ),

            ("[a b]\nport=1\n", "[a b]: a service name"),
            ("[a]\nport=1\nport=2\n", "[a] port = '2': key given twice"),
            ("[a]\nport=1\n[a]\nport=2\n", "[a]: service defined twice"),
            ("[a]\nport=1\nstart_paused=yes\n", "only a pausable service"),
            ("port=1\n[a]\nport=2\n", "stands before any [section]"),
            (
                "[a]\nport=1\ndisabled_status=99\n",
                "[a] disabled_status = '99'",
            ),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn every_error_is_reported_in_file_order() {
        let e = err("[b]\nrise=0\nport=x\n[a]\nport=1\nport=1\nbogus\n[general]\ndbus=maybe\n");
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines[0], "test.cfg: 5 errors:", "{e}");
        for (got, want) in lines[1..].iter().zip([
            "[b] rise = '0'",
            "[b] port = 'x'",
            "[a] port = '1': key given twice",
            "line 7: 'bogus'",
            "[general] dbus = 'maybe'",
        ]) {
            assert!(
                got.starts_with("  test.cfg: ") && got.contains(want),
                "{got:?} vs {want:?}"
            );
        }
        // A trailing comment is no part of the value, for every key.
        let c = parse("[a]\nport=80 # probe\nrise=2 ; two\n[general]\nsock_file=/s # x\n").unwrap();
        assert_eq!((c.services["a"].port, c.services["a"].rise), (80, 2));
        assert_eq!(c.general.sock_file, Path::new("/s"));
    }

    #[test]
    fn a_synonym_is_offered_only_where_its_key_belongs() {
        let e = parse("[a]\nport=1\nsocket=/s\n").unwrap_err().to_string();
        assert!(e.ends_with("[a] socket = '/s': unknown key"), "{e:?}");
    }

    #[test]
    fn log_level_by_number_or_name() {
        for (v, want) in [("0", 0), ("3", 3), ("error", 0), ("debug", 3), ("trace", 4)] {
            let c = parse(&format!("[general]\nlog_level = {v}\n")).unwrap();
            assert_eq!(c.general.log_level, want, "{v}");
        }
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/p.cfg")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/p.cfg: cannot read"));
    }

    #[test]
    fn case_examples_load_unchanged() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
        let c1 = Config::load(&Path::new(dir).join("case1-ourapp.cfg")).unwrap();
        let o = &c1.services["ourapp"];
        assert_eq!((o.port, o.interval), (48080, Duration::from_secs(120)));
        assert_eq!(c1.general.log_level, 4);
        assert_eq!(
            c1.general.sock_file,
            Path::new("/run/psentinel/psentinel.sock")
        );
        let c2 = Config::load(&Path::new(dir).join("case2-pgpool.cfg")).unwrap();
        let (p, w) = (&c2.services["pgpool"], &c2.services["pgwrite"]);
        assert_eq!((p.port, w.port), (64321, 64323));
        assert!(p.pausable && w.pausable && !p.start_paused);
        assert_eq!(
            w.check.as_deref().unwrap(),
            ["/usr/local/psentinel/test_pgwrite.sh"]
        );
        assert_eq!(w.interval, Duration::from_secs(10));
    }

    /// The main file and fragments as `Sources`, without a disk.
    fn merged(main: &str, fragments: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut s = Sources::single(main, Path::new("/etc/p.cfg"));
        for (name, text) in fragments {
            s.fragments.push(sources::Source {
                path: Path::new("/etc/p.d").join(name),
                text: text.to_string(),
            });
        }
        Config::from_sources(&s)
    }

    #[test]
    fn fragments_add_services_and_set_keys_of_earlier_ones() {
        let c = merged(
            "[web]\nport=1001\nrise=2\ncheck_script=/bin/true\n[general]\nlog_level=3\n",
            &[
                ("10-web.cfg", "[web]\nrise=3\nfall=4\n[db]\nport=1002\n"),
                ("20-tune.cfg", "[web]\nfall=5\n[db]\npausable=yes\n"),
            ],
        )
        .unwrap();
        let (web, db) = (&c.services["web"], &c.services["db"]);
        // A later file wins key by key; what it does not set stays.
        assert_eq!((web.port, web.rise, web.fall), (1001, 3, 5));
        assert_eq!(web.check.as_deref().unwrap(), ["/bin/true"]);
        assert!(db.pausable && db.port == 1002);
        assert_eq!(c.general.log_level, 3);
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            web.origin.files,
            [
                p("/etc/p.cfg"),
                p("/etc/p.d/10-web.cfg"),
                p("/etc/p.d/20-tune.cfg")
            ]
        );
        assert_eq!(web.origin.file_of("port"), p("/etc/p.cfg"));
        assert_eq!(web.origin.file_of("rise"), p("/etc/p.d/10-web.cfg"));
        assert_eq!(web.origin.file_of("fall"), p("/etc/p.d/20-tune.cfg"));
        assert_eq!(
            db.origin.files,
            [p("/etc/p.d/10-web.cfg"), p("/etc/p.d/20-tune.cfg")]
        );
        assert_eq!(
            *c.fragments,
            [p("/etc/p.d/10-web.cfg"), p("/etc/p.d/20-tune.cfg")]
        );
        // The main file alone reads as before.
        let one = merged("[web]\nport=1001\n", &[]).unwrap();
        assert_eq!(one.services["web"].origin.files, [p("/etc/p.cfg")]);
        assert!(one.fragments.is_empty());
    }

    #[test]
    fn fragment_errors_name_the_fragment() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "[web]\nport=1001\n",
                &[("10-db.cfg", "[db]\nport=1001\n")],
                "/etc/p.d/10-db.cfg: [db] port = '1001': port already used by [web] of /etc/p.cfg",
            ),
            (
                // A fragment that moves a service onto a port the main file gave another.
                "[web]\nport=1001\n[db]\nport=1002\n",
                &[("10-web.cfg", "[web]\nport=1002\n")],
                "/etc/p.d/10-web.cfg: [web] port = '1002': port already used by [db] of /etc/p.cfg",
            ),
            (
                "[web]\nport=1001\n",
                &[("10-a.cfg", "[a]\nport=1002\n"), ("20-b.cfg", "[b]\nagent_port=1002\nport=1003\n")],
                "/etc/p.d/20-b.cfg: [b] agent_port = '1002': port already used by [a] of /etc/p.d/10-a.cfg",
            ),
            (
                "[web]\nport=1001\n",
                &[("10-g.cfg", "[general]\nlog_level=4\n")],
                "/etc/p.d/10-g.cfg: [general]: [general] belongs in the main file /etc/p.cfg",
            ),
            (
                "[web]\nport=1001\n",
                &[("10-web.cfg", "[web]\nrise=0\n")],
                "/etc/p.d/10-web.cfg: [web] rise = '0'",
            ),
            (
                "[web]\nport=1001\n",
                &[("10-db.cfg", "[db]\npausable=yes\n")],
                "/etc/p.d/10-db.cfg: [db]: missing required key 'port'",
            ),
            (
                "[web]\nport=1001\n",
                &[("10-web.cfg", "[web]\nrise=2\nrise=3\n")],
                "/etc/p.d/10-web.cfg: [web] rise = '3': key given twice",
            ),
            (
                "[web]\nport=1001\n",
                &[("10-db.cfg", "[db]\nport=1002\n[db]\nrise=2\n")],
                "/etc/p.d/10-db.cfg: [db]: service defined twice in this file",
            ),
            (
                "[web]\nport=1001\n",
                &[("10-web.cfg", "[web]\nprot=2\n")],
                "/etc/p.d/10-web.cfg: [web] prot = '2': unknown key (did you mean 'port'?)",
            ),
            (
                "[web]\nport=1001\n",
                &[("10-web.cfg", "rise=2\n[web]\n")],
                "/etc/p.d/10-web.cfg: 'rise = 2' stands before any [section]",
            ),
            (
                "[web]\nport=1001\n",
                &[("10-web.cfg", "[web]\njunk\n")],
                "/etc/p.d/10-web.cfg: line 2: 'junk'",
            ),
            (
                // start_paused in one file, pausable=no (default) in force: named where set.
                "[web]\nport=1001\n",
                &[("10-web.cfg", "[web]\nstart_paused=yes\n")],
                "/etc/p.d/10-web.cfg: [web] start_paused = 'yes': only a pausable service",
            ),
        ];
        for (main, fragments, want) in cases {
            let e = merged(main, fragments).unwrap_err().to_string();
            assert!(
                e.starts_with(want),
                "{fragments:?}: got {e:?}, want {want:?}"
            );
        }
        // A service in two files is one service, not "defined twice".
        merged("[web]\nport=1001\n", &[("10-web.cfg", "[web]\n")]).unwrap();
    }

    #[test]
    fn errors_of_every_file_at_once_main_first() {
        let e = merged(
            "[web]\nport=1001\nrise=0\n",
            &[
                ("10-a.cfg", "[a]\nport=x\njunk\n"),
                ("20-b.cfg", "[general]\n[web]\nfall=0\n"),
            ],
        )
        .unwrap_err()
        .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines[0], "/etc/p.cfg: 5 errors:", "{e}");
        for (got, want) in lines[1..].iter().zip([
            "  /etc/p.cfg: [web] rise = '0'",
            "  /etc/p.d/10-a.cfg: [a] port = 'x'",
            "  /etc/p.d/10-a.cfg: line 3: 'junk'",
            "  /etc/p.d/20-b.cfg: [general]: [general] belongs in the main file",
            "  /etc/p.d/20-b.cfg: [web] fall = '0'",
        ]) {
            assert!(got.starts_with(want), "{got:?} vs {want:?}");
        }
    }
}
