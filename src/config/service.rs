//! The keys of a service section: what each accepts, its default, and the typed
//! [`ServiceConfig`] they make.

use super::reader::SectionReader;
use super::seconds;
use crate::capacity::MinCapacity;
use crate::flap::FlapPolicy;
use crate::plugin::CheckStyle;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// How the check's exit code is read (plain: 0 passes; nagios: 1 is a warning).
    pub check_style: CheckStyle,
    /// The HTTP answer while the check warns (nagios style).
    pub warning_status: u16,
    /// Floor of the agent weight a passing check asks for, in percent (0 = none).
    pub min_weight: u8,
    pub flap: FlapPolicy,
    /// `control_group`: groups whose members may change this service (and only it).
    pub control_groups: Vec<String>,
    /// The files the service's keys come from.
    pub origin: Origin,
    /// The application's systemd unit (`unit = ourapp.service`): followed on the system bus;
    /// while it is not active the service is out ([`crate::unit`]).
    pub unit: Option<String>,
}

/// Where a service's configuration comes from: `status` shows the files, and what `-t`
/// finds wrong with a key after loading names the file that set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The main file and/or fragments with a section of the service, in the order they apply.
    pub files: Vec<PathBuf>,
    /// The file of the value in force of each key that is set.
    pub keys: BTreeMap<String, PathBuf>,
}

impl Origin {
    /// The file that set `key`; the file that first defined the service when none did.
    pub fn file_of(&self, key: &str) -> &Path {
        self.keys
            .get(key)
            .or(self.files.first())
            .map_or(Path::new(""), |p| p.as_path())
    }
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

pub(super) const SERVICE_KEYS: &[&str] = &[
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
    "check_style",
    "warning_status",
    "min_weight",
    "flap_max_changes",
    "flap_window",
    "flap_hold",
    "control_group",
    "unit",
];

/// Every key read, every bad one recorded; a port missing or bad is recorded and left 0 (no
/// port is 0), so that `-t` still looks at the rest of the service.
pub(super) fn parse_service(s: &SectionReader) -> ServiceConfig {
    let port = s.opt("port", parse_port);
    if port.is_none() && s.get("port").is_none() {
        s.section_err("missing required key 'port'");
    }
    let pausable = s.words_or("pausable", false, BOOL_WORDS, parse_bool);
    let start_paused = s.words_or("start_paused", false, BOOL_WORDS, parse_bool);
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
        min_capacity: s.words_or(
            "min_capacity",
            MinCapacity::default(),
            &["off"],
            min_capacity,
        ),
        origin: s.origin(),
        check_style: s.words_or(
            "check_style",
            CheckStyle::Plain,
            CheckStyle::WORDS,
            CheckStyle::parse,
        ),
        warning_status: s.parse_or("warning_status", 200, http_status),
        min_weight: s.parse_or("min_weight", 0, |v| {
            v.trim_end_matches('%')
                .parse::<u8>()
                .ok()
                .filter(|w| *w <= 100)
                .ok_or("expected a percentage from 0 to 100")
        }),
        flap: FlapPolicy {
            max_changes: s.parse_or("flap_max_changes", 0, |v| {
                v.parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 1000)
                    .ok_or("expected a whole number from 0 (off) to 1000")
            }),
            window: s.parse_or("flap_window", FlapPolicy::default().window, seconds),
            hold: s.parse_or("flap_hold", FlapPolicy::default().hold, seconds),
        },
        control_groups: s.parse_or("control_group", Vec::new(), group_list),
        unit: s.opt("unit", unit_name),
    };
    svc
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

/// `deploy-ourapp, ops`: one or more group names, comma-separated, each as `groupadd` takes
/// it. Whether the groups exist is `-t`'s question ([`crate::lint`]): a group may be created
/// after the file is written, and one that does not exist admits nobody.
fn group_list(v: &str) -> Result<Vec<String>, &'static str> {
    let mut groups: Vec<String> = Vec::new();
    for g in v.split(',').map(str::trim) {
        let valid = !g.is_empty()
            && g.len() <= 32
            && !g.starts_with('-')
            && g.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'$'));
        if !valid {
            return Err(
                "expected group names separated by commas (letters, digits, '_', '-', '.')",
            );
        }
        if !groups.iter().any(|x| x == g) {
            groups.push(g.to_string());
        }
    }
    Ok(groups)
}

/// A systemd unit name as `systemctl` takes it: `ourapp.service`, `pg@main.service`.
fn unit_name(v: &str) -> Result<String, &'static str> {
    const TYPES: [&str; 5] = [".service", ".socket", ".target", ".mount", ".scope"];
    let ok_chars = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c));
    if !ok_chars || v.len() > 255 || v.starts_with('.') {
        return Err("expected a systemd unit name, e.g. ourapp.service");
    }
    if !TYPES.iter().any(|t| v.len() > t.len() && v.ends_with(t)) {
        return Err("expected a unit name with its type, e.g. ourapp.service");
    }
    Ok(v.to_string())
}

/// The words of [`parse_bool`] a misspelling is matched against (not 1/0: `x` means neither).
pub(super) const BOOL_WORDS: &[&str] = &["yes", "no", "true", "false", "on", "off"];

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::closest;
    use crate::config::tests::{err, parse};

    #[test]
    fn plugin_keys_defaults_and_bad_values() {
        let c = parse("[a]\nport=1\n").unwrap();
        let a = &c.services["a"];
        assert_eq!(
            (a.check_style, a.warning_status, a.min_weight),
            (CheckStyle::Plain, 200, 0)
        );
        assert_eq!(a.flap.max_changes, 0, "damping off");
        assert_eq!(
            (a.flap.window, a.flap.hold),
            (Duration::from_secs(300), Duration::from_secs(300))
        );
        let c = parse(
            "[a]\nport=1\ncheck_style=Nagios\nwarning_status=404\nmin_weight=30%\n\
             flap_max_changes=2\nflap_window=60\nflap_hold=0.5\n",
        )
        .unwrap();
        let a = &c.services["a"];
        assert_eq!(
            (a.check_style, a.warning_status, a.min_weight),
            (CheckStyle::Nagios, 404, 30)
        );
        assert_eq!(a.flap.max_changes, 2);
        assert_eq!(
            (a.flap.window, a.flap.hold),
            (Duration::from_secs(60), Duration::from_millis(500))
        );
        for (line, why) in [
            ("check_style=icinga", "expected plain or nagios"),
            ("warning_status=100", "expected an HTTP status code 200-599"),
            ("min_weight=101", "expected a percentage from 0 to 100"),
            ("flap_max_changes=-1", "from 0 (off) to 1000"),
            ("flap_hold=0", "greater than 0"),
        ] {
            let e = err(&format!("[a]\nport=1\n{line}\n"));
            let (k, v) = line.split_once('=').unwrap();
            assert!(
                e.contains(&format!("[a] {k} = '{v}'")) && e.contains(why),
                "{e}"
            );
        }
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
    fn misspelt_words_get_a_hint() {
        for (text, want) in [
            (
                "[a]\nport=1\ncheck_style=nagois\n",
                "[a] check_style = 'nagois': expected plain or nagios (did you mean 'nagios'?)",
            ),
            (
                "[a]\nport=1\npausable=ture\n",
                "[a] pausable = 'ture': expected a boolean: yes/no, true/false, on/off, 1/0 \
                 (did you mean 'true'?)",
            ),
            ("[a]\nport=1\nstart_paused=Yse\n", "(did you mean 'yes'?)"),
            ("[a]\nport=1\nmin_capacity=of\n", "(did you mean 'off'?)"),
            (
                "[general]\ndbus=sytem\n",
                "[general] dbus = 'sytem': expected system, session or off (did you mean 'system'?)",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(want), "{text:?}: got {e:?}, want {want:?}");
        }
        // Nothing close, or too short to guess from: no hint.
        for text in [
            "[a]\nport=1\npausable=x\n",
            "[a]\nport=1\ncheck_style=icinga\n",
        ] {
            let e = err(text);
            assert!(!e.contains("did you mean"), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn typo_hints() {
        assert_eq!(closest("prot", SERVICE_KEYS), Some("port"));
        assert_eq!(closest("zzzzzz", SERVICE_KEYS), None);
    }
}
