//! Configuration: INI text -> validated, typed [`Config`].
//!
//! Parsing happens in two layers: [`crate::ini`] turns text into sections of string pairs
//! (trailing comments removed), then [`Config::from_ini`] checks every key and value and builds
//! typed fields. Every error names the file, the section, the key, the value and why, so
//! `psentinel -t` output is enough to fix a file, and every error of the file is reported at
//! once, in file order. There is no "best effort": a file with one bad value is rejected whole,
//! at start-up and on reload (where the running configuration stays).

use crate::capacity::MinCapacity;
use crate::ini;
use crate::model::valid_service_name;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub name: String,
    pub port: u16,
    /// None = every address (dual-stack where IPv6 exists).
    pub bind: Option<IpAddr>,
    pub pausable: bool,
    pub start_paused: bool,
    /// Program and arguments, already split; None = no check (the service counts as passing).
    pub check: Option<Vec<String>>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    pub agent_port: Option<u16>,
    pub disabled_status: u16,
    pub paused_status: u16,
    pub haproxy_fall: u32,
    /// The `rise` HAProxy uses for this server: answers `enable --wait` counts.
    pub haproxy_rise: u32,
    /// The capacity guard of disable and pause ([`crate::capacity`]).
    pub min_capacity: MinCapacity,
}

impl ServiceConfig {
    /// The TCP address the HTTP probe listens on.
    pub fn probe_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind_ip(), self.port)
    }

    pub fn agent_addr(&self) -> Option<SocketAddr> {
        self.agent_port.map(|p| SocketAddr::new(self.bind_ip(), p))
    }

    fn bind_ip(&self) -> IpAddr {
        self.bind.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub file: PathBuf,
    pub general: General,
    /// By name; names are unique.
    pub services: BTreeMap<String, ServiceConfig>,
}

const SERVICE_KEYS: &[&str] = &[
    "port",
    "pausable",
    "start_paused",
    "check_script",
    "check_script_interval",
    "check_timeout",
    "bind",
    "rise",
    "fall",
    "agent_port",
    "disabled_status",
    "paused_status",
    "haproxy_fall",
    "haproxy_rise",
    "min_capacity",
];
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
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Config::parse(&text, file)
    }

    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let (sections, syntax) = ini::parse(text);
        let mut errors: Vec<(usize, ConfigError)> = syntax
            .into_iter()
            .map(|e| {
                let err = ConfigError::Syntax {
                    file: file.to_path_buf(),
                    line: e.line,
                    text: e.text,
                    why: e.why.into(),
                };
                (e.line, err)
            })
            .collect();
        let config = Config::from_ini(&sections, file, &mut errors);
        errors.sort_by_key(|(line, _)| *line);
        let mut errors: Vec<ConfigError> = errors.into_iter().map(|(_, e)| e).collect();
        match errors.len() {
            0 => Ok(config),
            1 => Err(errors.remove(0)),
            _ => Err(ConfigError::Several {
                file: file.to_path_buf(),
                errors,
            }),
        }
    }

    /// `sock_file` of `file`, read leniently: the client must find the daemon even while the
    /// rest of the file is being edited (to send `reload` and hear what is wrong).
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

    /// Checks every section; errors go to `errors` with their line. The result is only
    /// meaningful when no error was added.
    fn from_ini(
        sections: &[ini::Section],
        file: &Path,
        errors: &mut Vec<(usize, ConfigError)>,
    ) -> Config {
        let mut general = None;
        let mut services = BTreeMap::new();
        let mut ports: HashMap<u16, String> = HashMap::new();
        for sec in sections {
            let Some(section) = sec.name.as_deref() else {
                let e = &sec.entries[0];
                errors.push((
                    e.line,
                    ConfigError::File {
                        file: file.into(),
                        why: format!("'{} = {}' stands before any [section]", e.key, e.value),
                    },
                ));
                continue;
            };
            let s = SectionReader::new(file, sec);
            if section == "general" {
                if general.is_some() {
                    s.section_err("section appears twice");
                } else {
                    s.reject_unknown(GENERAL_KEYS);
                    general = Some(parse_general(&s));
                }
            } else if !valid_service_name(section) {
                s.section_err("a service name may hold only letters, digits, '_', '-' and '.'");
            } else if services.contains_key(section) {
                s.section_err("service defined twice");
            } else {
                s.reject_unknown(SERVICE_KEYS);
                if let Some(svc) = parse_service(&s) {
                    for (key, port) in [("port", Some(svc.port)), ("agent_port", svc.agent_port)] {
                        let Some(port) = port else { continue };
                        if let Some(other) = ports.insert(port, section.to_string()) {
                            s.value_err(
                                key,
                                &port.to_string(),
                                &format!("port already used by [{other}]"),
                            );
                        }
                    }
                    services.insert(section.to_string(), svc);
                }
            }
            errors.extend(s.errors.into_inner());
        }
        Config {
            file: file.to_path_buf(),
            general: general.unwrap_or_default(),
            services,
        }
    }
}

fn parse_general(s: &SectionReader) -> General {
    let d = General::default();
    General {
        log_level: s.parse_or("log_level", d.log_level, |v| {
            v.parse::<u8>()
                .ok()
                .filter(|l| *l <= 4)
                .ok_or("expected 0..4 (error, warn, info, debug, trace)")
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
        dbus: s.parse_or("dbus", d.dbus, |v| match v.to_ascii_lowercase().as_str() {
            "system" => Ok(DbusMode::System),
            "session" => Ok(DbusMode::Session),
            "off" | "no" | "none" => Ok(DbusMode::Off),
            _ => Err("expected system, session or off"),
        }),
        metrics_listen: s.opt("metrics_listen", |v| {
            v.parse::<SocketAddr>()
                .map_err(|_| "expected ADDR:PORT, e.g. 127.0.0.1:9901 or [::1]:9901")
        }),
        silence_min: s.parse_or("silence_min", d.silence_min, seconds),
    }
}

/// None when the port is missing or bad (the error is recorded; other keys are still checked).
fn parse_service(s: &SectionReader) -> Option<ServiceConfig> {
    let port = s.opt("port", parse_port);
    if port.is_none() && s.get("port").is_none() {
        s.section_err("missing required key 'port'");
    }
    let pausable = s.parse_or("pausable", false, parse_bool);
    let start_paused = s.parse_or("start_paused", false, parse_bool);
    if start_paused && !pausable {
        s.value_err(
            "start_paused",
            s.get("start_paused").unwrap_or_default(),
            "only a pausable service can start paused (set pausable=yes)",
        );
    }
    let check = s
        .opt("check_script", |v| {
            if v.eq_ignore_ascii_case("none") || v.is_empty() {
                return Ok(None);
            }
            match shlex::split(v) {
                Some(words) if !words.is_empty() => Ok(Some(words)),
                _ => Err("unbalanced quotes (the command line is split like a shell would)"),
            }
        })
        .flatten();
    let interval = s.parse_or("check_script_interval", Duration::from_secs(10), seconds);
    let timeout = s.parse_or("check_timeout", interval, seconds);
    let svc = ServiceConfig {
        name: s.section.to_string(),
        port: port.unwrap_or_default(),
        bind: s.opt("bind", |v| {
            v.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .map_err(|_| "expected an IPv4 or IPv6 address")
        }),
        pausable,
        start_paused,
        check,
        interval,
        timeout,
        rise: s.parse_or("rise", 1, count),
        fall: s.parse_or("fall", 1, count),
        agent_port: s.opt("agent_port", parse_port),
        disabled_status: s.parse_or("disabled_status", 503, http_status),
        paused_status: s.parse_or("paused_status", 503, http_status),
        haproxy_fall: s.parse_or("haproxy_fall", 3, count),
        haproxy_rise: s.parse_or("haproxy_rise", 2, count),
        min_capacity: s.parse_or("min_capacity", MinCapacity::default(), min_capacity),
    };
    port.map(|_| svc)
}

/// `off`, or a percentage 0-100 (`50` or `50%`).
fn min_capacity(v: &str) -> Result<MinCapacity, &'static str> {
    if v.eq_ignore_ascii_case("off") {
        return Ok(MinCapacity::Off);
    }
    v.trim_end_matches('%')
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 100)
        .map(MinCapacity::Percent)
        .ok_or("expected a percentage 0-100 (the share of the backend's usable weight that must remain), or off")
}

/// yes/no, true/false, on/off, 1/0, any case.
pub fn parse_bool(v: &str) -> Result<bool, &'static str> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" | "1" => Ok(true),
        "no" | "false" | "off" | "0" => Ok(false),
        _ => Err("expected a boolean: yes/no, true/false, on/off, 1/0"),
    }
}

fn parse_port(v: &str) -> Result<u16, &'static str> {
    v.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or("expected a TCP port 1-65535")
}

fn seconds(v: &str) -> Result<Duration, &'static str> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err("expected a number of seconds greater than 0 (at most 86400)"),
    }
}

fn count(v: &str) -> Result<u32, &'static str> {
    v.parse::<u32>()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or("expected a whole number from 1 to 1000")
}

fn http_status(v: &str) -> Result<u16, &'static str> {
    v.parse::<u16>()
        .ok()
        .filter(|s| (200..=599).contains(s))
        .ok_or("expected an HTTP status code 200-599")
}

/// One section's keys, with the context every error message needs, and the errors found so
/// far (each with its line, to report them in file order).
struct SectionReader<'a> {
    file: &'a Path,
    section: &'a str,
    line: usize,
    /// The first value of each key, and its line.
    values: HashMap<&'a str, (&'a str, usize)>,
    entries: &'a [ini::Entry],
    errors: RefCell<Vec<(usize, ConfigError)>>,
}

impl<'a> SectionReader<'a> {
    fn new(file: &'a Path, sec: &'a ini::Section) -> Self {
        let s = SectionReader {
            file,
            section: sec.name.as_deref().unwrap_or_default(),
            line: sec.line,
            values: HashMap::new(),
            entries: &sec.entries,
            errors: RefCell::new(Vec::new()),
        };
        let mut values = HashMap::new();
        for e in &sec.entries {
            if values.contains_key(e.key.as_str()) {
                s.push(
                    e.line,
                    s.value_error(&e.key, &e.value, "key given twice in this section"),
                );
            } else {
                values.insert(e.key.as_str(), (e.value.as_str(), e.line));
            }
        }
        SectionReader { values, ..s }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.values.get(key).map(|(v, _)| *v)
    }

    fn push(&self, line: usize, e: ConfigError) {
        self.errors.borrow_mut().push((line, e));
    }

    fn reject_unknown(&self, known: &[&str]) {
        for e in self.entries {
            if !known.contains(&e.key.as_str()) && self.values[e.key.as_str()].1 == e.line {
                let hint = closest(&e.key, known)
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                self.value_err(&e.key, &e.value, &format!("unknown key{hint}"));
            }
        }
    }

    /// The parsed value of `key`, None when absent or bad (a bad one is recorded).
    fn opt<T>(&self, key: &str, parse: impl FnOnce(&str) -> Result<T, &'static str>) -> Option<T> {
        let v = self.get(key)?;
        parse(v).map_err(|why| self.value_err(key, v, why)).ok()
    }

    fn parse_or<T>(
        &self,
        key: &str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> T {
        self.opt(key, parse).unwrap_or(default)
    }

    fn path_or(&self, key: &str, default: PathBuf) -> PathBuf {
        self.parse_or(key, default, |v| {
            if v.is_empty() {
                Err("expected a path")
            } else {
                Ok(PathBuf::from(v))
            }
        })
    }

    fn value_error(&self, key: &str, value: &str, why: &str) -> ConfigError {
        ConfigError::Value {
            file: self.file.into(),
            section: self.section.into(),
            key: key.into(),
            value: value.into(),
            why: why.into(),
        }
    }

    /// Records an error on `key` (at the key's line).
    fn value_err(&self, key: &str, value: &str, why: &str) {
        let line = self.values.get(key).map_or(self.line, |(_, l)| *l);
        self.push(line, self.value_error(key, value, why));
    }

    /// Records an error on the whole section (at its header's line).
    fn section_err(&self, why: &str) {
        let e = ConfigError::Section {
            file: self.file.into(),
            section: self.section.into(),
            why: why.into(),
        };
        self.push(self.line, e);
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

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.cfg"))
    }

    fn err(text: &str) -> String {
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
    fn check_script_is_split_like_a_shell() {
        let c = parse("[a]\nport=1\ncheck_script=/bin/sh -c 'exit 3' \"a b\"\n").unwrap();
        assert_eq!(
            c.services["a"].check.as_deref().unwrap(),
            ["/bin/sh", "-c", "exit 3", "a b"]
        );
        let c = parse("[a]\nport=1\ncheck_script=none\n").unwrap();
        assert!(c.services["a"].check.is_none());
        assert!(err("[a]\nport=1\ncheck_script=/bin/x 'oops\n").contains("unbalanced quotes"));
    }

    #[test]
    fn booleans_any_spelling() {
        for (v, b) in [("YES", true), ("On", true), ("1", true), ("false", false)] {
            let c = parse(&format!("[a]\nport=1\npausable={v}\n")).unwrap();
            assert_eq!(c.services["a"].pausable, b, "{v}");
        }
        let e = err("[a]\nport=1\npausable=maybe\n");
        assert!(
            e.contains("[a] pausable = 'maybe'") && e.contains("boolean"),
            "{e}"
        );
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
            ("[general]\ndbus=maybe\n", "[general] dbus = 'maybe'"),
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

    #[test]
    fn typo_hints() {
        assert_eq!(closest("prot", SERVICE_KEYS), Some("port"));
        assert_eq!(closest("zzzzzz", SERVICE_KEYS), None);
    }
}
