//! The control protocol, spoken on the Unix socket by `psentinel -c` and by anyone with socat.
//!
//! Request: one line of at most [`MAX_LINE`] bytes, the command and its arguments as words,
//! quoted like a shell would (`disable ourapp --for 30m 'deploy v2'`), ending in `\n`, sent
//! within [`REQUEST_DEADLINE`].
//!
//! Reply: one status line `<code> <word>\n` — `0 ok`, `1 refused`, `2 usage` — then the body,
//! text for people (or JSON for `status --json`), until the daemon closes the connection. The
//! code is the client's exit status.
//!
//! Progress (`--wait`): before the status line the daemon may send any number of progress
//! lines, each starting with [`PROGRESS`] (`+ `), as things happen. The status line comes when
//! the outcome is known, so the code is still the first thing that is not progress and the
//! client stays a loop of "print progress, then act as before". A command without `--wait`
//! sends no progress lines; a client that does not know them can only get them by asking
//! for `--wait`.
//!
//! The daemon parses the words ([`Command::parse`]), so the list of commands and their help
//! live in one place, here. The client runs the same parser before it connects, for the
//! commands it knows, so a mistyped option is a usage error (exit 2) whether or not the daemon
//! runs; a command it does not know goes to the daemon as is (a newer daemon may know it).
//!
//! Options: every word that starts with `-` (other than `-` alone) before a `--` must be an
//! option of the command, or the request is a usage error naming it (and, for a near miss,
//! the option it likely meant). Words after `--` are never options: that is where a reason
//! that starts with `-` goes.

use super::usage::{DurationError, UsageError};
use std::time::Duration;

pub const MAX_LINE: usize = 65_536;
/// Prefix of a progress line, sent before the status line (`--wait`).
pub const PROGRESS: &str = "+ ";
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Ok = 0,
    Refused = 1,
    Usage = 2,
    /// `test`: the check ran and failed; the body is its report, as on success.
    Failed = 3,
}

impl Code {
    pub fn word(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::Refused => "refused",
            Code::Usage => "usage",
            Code::Failed => "failed",
        }
    }

    pub fn status_line(self) -> String {
        format!("{} {}\n", self as u8, self.word())
    }

    pub fn from_status_line(line: &str) -> Option<Code> {
        match line.split_whitespace().next()? {
            "0" => Some(Code::Ok),
            "1" => Some(Code::Refused),
            "2" => Some(Code::Usage),
            "3" => Some(Code::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help(Option<String>),
    Version,
    Status {
        service: Option<String>,
        json: bool,
    },
    Enable(String),
    /// `force`: past the capacity guard ([`crate::capacity`]).
    Disable {
        service: String,
        for_: Option<Duration>,
        reason: String,
        force: bool,
    },
    /// `service` None: every pausable service.
    Pause {
        service: Option<String>,
        for_: Option<Duration>,
        reason: String,
        force: bool,
    },
    Run(Option<String>),
    /// The application's unit is about to stop / has started (the drain unit).
    UnitStopping(String),
    UnitStarted(String),
    Test(String),
    DisableTest(String),
    EnableTest(String),
    Reload,
    StopServer,
    /// Prometheus text, as served on `metrics_listen`.
    Metrics,
    /// enable, disable, pause or run, then wait until HAProxy has acted ([`crate::wait`]);
    /// `drained` (`--wait=drained`, disable, pause, unit_stopping): and holds no session on
    /// the server.
    Wait {
        cmd: Box<Command>,
        timeout: Duration,
        drained: bool,
    },
}

/// name, usage, what it does.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "help",
        "help [COMMAND]",
        "list the commands, or explain one",
    ),
    ("version", "version", "print the daemon's version"),
    (
        "status",
        "status [SERVICE] [--json]",
        "show the daemon and every service (or one): port, state, reason, who, last check",
    ),
    (
        "enable",
        "enable SERVICE [--wait [--timeout D]]",
        "lift a manual disable: probes answer from the check again",
    ),
    (
        "disable",
        "disable SERVICE [--for DURATION] [--force] [--wait[=drained] [--timeout D]] [REASON...]",
        "take SERVICE out: probes get 503 (disabled_status); --for 30m lifts it by itself",
    ),
    (
        "pause",
        "pause [SERVICE | --all] [--for DURATION] [--force] [--wait[=drained] [--timeout D]] [REASON...]",
        "pause one pausable service, or without a name every pausable service (paused_status)",
    ),
    (
        "run",
        "run [SERVICE] [--wait [--timeout D]]",
        "resume one paused service, or without a name every pausable service",
    ),
    (
        "unit_stopping",
        "unit_stopping UNIT [--wait[=drained] [--timeout D]]",
        "UNIT (unit=) is about to stop: take out every service that follows it",
    ),
    (
        "unit_started",
        "unit_started UNIT [--wait [--timeout D]]",
        "UNIT has started: end unit_stopping, check its services now",
    ),
    (
        "test",
        "test SERVICE",
        "run SERVICE's check now, wait, print its exit status and output; exit 3 if it failed",
    ),
    (
        "disable_test",
        "disable_test SERVICE",
        "stop running SERVICE's check; meanwhile the service counts as passing",
    ),
    (
        "enable_test",
        "enable_test SERVICE",
        "run SERVICE's check again (at once, then on its interval)",
    ),
    (
        "reload",
        "reload",
        "re-read the configuration file (as SIGHUP); a bad file is refused",
    ),
    ("stop_server", "stop_server", "stop the daemon gracefully"),
    (
        "metrics",
        "metrics",
        "print the Prometheus metrics (as served on metrics_listen)",
    ),
];

/// Help's note on `--wait`, after the table.
const WAIT_HELP: &str = "--wait: return when every HAProxy that probed in the last minute has acted (its \
send-state header, else haproxy_fall/haproxy_rise answers read); exit 1 at --timeout (default 60s)\n\
--wait=drained (disable, pause, unit_stopping): and, with send-state, HAProxy holds no session on the server (scur=0)\n\
--force (disable, pause): take the service out even when the capacity guard refuses (min_capacity)\n";

/// `help COMMAND` for a command that does not exist; `hint`: the one a typo likely meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown command '{word}'{}; 'help' lists them", super::usage::did_you_mean(*.hint))]
pub struct UnknownCommand {
    pub word: String,
    pub hint: Option<&'static str>,
}

/// The command a misspelt name likely meant.
fn closest_command(word: &str) -> Option<&'static str> {
    let names: Vec<&'static str> = COMMANDS.iter().map(|(n, _, _)| *n).collect();
    crate::config::closest(word, &names)
}

pub fn help_text(command: Option<&str>) -> Result<String, UnknownCommand> {
    match command {
        None => {
            let mut out = String::from("commands (psentinel -c COMMAND [ARG...]):\n");
            for (_, usage, what) in COMMANDS {
                out.push_str(&format!("  {usage:<52} {what}\n"));
            }
            out.push_str("DURATION: 90s, 30m, 2h, 1d ...\n");
            out.push_str(WAIT_HELP);
            Ok(out)
        }
        Some(c) => COMMANDS
            .iter()
            .find(|(name, _, _)| *name == c)
            .map(|(_, usage, what)| format!("{usage}\n  {what}\n"))
            .ok_or_else(|| UnknownCommand {
                word: c.to_string(),
                hint: closest_command(c),
            }),
    }
}

pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(s).map_err(|why| DurationError::Unreadable {
        text: s.into(),
        why,
    })?;
    if d.is_zero() {
        return Err(DurationError::Zero { text: s.into() });
    }
    Ok(d)
}

/// `[NAME] [--for D] [REASON...]` as taken by disable and pause.
struct Words<'a> {
    rest: &'a [String],
}

impl<'a> Words<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let (first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(first)
    }

    fn peek(&self) -> Option<&'a str> {
        self.rest.first().map(String::as_str)
    }

    /// `--for D` and `--force` wherever they stand before the reason; the other words make
    /// the reason.
    fn for_and_reason(&mut self) -> Result<(Option<Duration>, String, bool), UsageError> {
        let mut for_ = None;
        let mut force = false;
        let mut reason = Vec::new();
        while let Some(w) = self.next() {
            match w {
                "--force" => force = true,
                "--for" => {
                    let d = self.next().ok_or(UsageError::NoDuration {
                        option: "--for",
                        example: "30m",
                    })?;
                    for_ = Some(parse_duration(d)?);
                }
                _ if w.starts_with("--for=") => for_ = Some(parse_duration(&w[6..])?),
                "--" => {
                    reason.extend(self.rest.iter().map(String::as_str));
                    self.rest = &[];
                }
                _ => reason.push(w),
            }
        }
        Ok((for_, reason.join(" "), force))
    }

    fn end(&self, usage: &'static str) -> Result<(), UsageError> {
        match self.peek() {
            None => Ok(()),
            Some(w) => Err(UsageError::Unexpected {
                word: w.into(),
                usage,
            }),
        }
    }
}

/// The options each command takes (`--for=D` and `--timeout=D` count as `--for`, `--timeout`).
fn options_of(name: &str) -> &'static [&'static str] {
    const WAIT: [&str; 2] = ["--wait", "--timeout"];
    match name {
        "status" => &["--json"],
        "enable" | "run" | "unit_stopping" | "unit_started" => &WAIT,
        "disable" => &["--for", "--force", WAIT[0], WAIT[1]],
        "pause" => &["--all", "--for", "--force", WAIT[0], WAIT[1]],
        _ => &[],
    }
}

/// Options the client takes out of the words before sending them (`-f FILE` after the
/// command): known here only to suggest them for a typo.
const CLIENT_OPTIONS: &[&str] = &["--config", "--socket", "--json"];

/// Rejects any word before `--` that looks like an option but is none of `name`'s.
fn check_options(name: &str, args: &[String], usage: &'static str) -> Result<(), UsageError> {
    let known = options_of(name);
    for w in args.iter().take_while(|w| *w != "--") {
        if !w.starts_with('-') || w == "-" {
            continue;
        }
        let opt = w.split_once('=').map_or(w.as_str(), |(o, _)| o);
        if known.contains(&opt) {
            continue;
        }
        let candidates: Vec<&str> = known.iter().chain(CLIENT_OPTIONS).copied().collect();
        return Err(UsageError::UnknownOption {
            word: w.clone(),
            hint: crate::config::closest(opt, &candidates),
            reason_after_dashes: matches!(name, "disable" | "pause"),
            usage,
        });
    }
    Ok(())
}

fn usage_of(name: &str) -> &'static str {
    COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, u, _)| u)
}

/// What `--wait` waits for, and how long.
struct WaitFor {
    timeout: Duration,
    drained: bool,
}

/// Takes `--wait[=drained]` and `--timeout D` out of `args` (before any `--`).
fn take_wait(
    name: &str,
    args: &[String],
    usage: &'static str,
) -> Result<(Option<WaitFor>, Vec<String>), UsageError> {
    let mut wait = false;
    let mut drained = false;
    let mut timeout = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => {
                rest.push(a.clone());
                rest.extend(it.by_ref().cloned());
            }
            "--wait" => wait = true,
            "--wait=drained" if matches!(name, "disable" | "pause" | "unit_stopping") => {
                wait = true;
                drained = true;
            }
            w if w.starts_with("--wait=") => {
                // A typo of the one value gets it named, as an unknown option does.
                let drains = matches!(name, "disable" | "pause" | "unit_stopping");
                return Err(UsageError::WaitValue {
                    word: w.into(),
                    hint: drains
                        .then(|| crate::config::closest(w, &["--wait=drained"]))
                        .flatten(),
                    usage,
                });
            }
            "--timeout" => {
                let d = it.next().ok_or(UsageError::NoDuration {
                    option: "--timeout",
                    example: "2m",
                })?;
                timeout = Some(parse_duration(d)?);
            }
            t if t.starts_with("--timeout=") => timeout = Some(parse_duration(&t[10..])?),
            _ => rest.push(a.clone()),
        }
    }
    match (wait, timeout) {
        (false, Some(_)) => Err(UsageError::TimeoutWithoutWait { usage }),
        (false, None) => Ok((None, rest)),
        (true, t) => Ok((
            Some(WaitFor {
                timeout: t.unwrap_or(crate::wait::DEFAULT_TIMEOUT),
                drained,
            }),
            rest,
        )),
    }
}

impl Command {
    /// Parses the request's words; the error's Display is a usage message for a person.
    pub fn parse(words: &[String]) -> Result<Command, UsageError> {
        let Some((name, args)) = words.split_first() else {
            return Err(UsageError::Empty);
        };
        let usage = usage_of(name);
        if COMMANDS.iter().any(|(n, _, _)| n == name) {
            check_options(name, args, usage)?;
        }
        if matches!(
            name.as_str(),
            "enable" | "disable" | "pause" | "run" | "unit_stopping" | "unit_started"
        ) {
            let (wait, rest) = take_wait(name, args, usage)?;
            if let Some(WaitFor { timeout, drained }) = wait {
                let mut inner = vec![name.clone()];
                inner.extend(rest);
                return Ok(Command::Wait {
                    cmd: Box::new(Command::parse(&inner)?),
                    timeout,
                    drained,
                });
            }
        }
        let mut w = Words { rest: args };
        let missing = |what| UsageError::Missing { what, usage };
        let service = |w: &mut Words| {
            w.next()
                .map(str::to_string)
                .ok_or_else(|| missing("SERVICE"))
        };
        let cmd = match name.as_str() {
            "help" => {
                let c = w.next().map(str::to_string);
                w.end(usage)?;
                Command::Help(c)
            }
            "version" => Command::Version,
            "status" => {
                let mut json = false;
                let mut svc = None;
                while let Some(a) = w.next() {
                    match a {
                        "--json" => json = true,
                        _ if svc.is_none() && !a.starts_with('-') => svc = Some(a.to_string()),
                        _ => {
                            return Err(UsageError::Unexpected {
                                word: a.into(),
                                usage,
                            })
                        }
                    }
                }
                Command::Status { service: svc, json }
            }
            "enable" => Command::Enable(service(&mut w)?),
            "disable" => {
                let service = service(&mut w)?;
                let (for_, reason, force) = w.for_and_reason()?;
                Command::Disable {
                    service,
                    for_,
                    reason,
                    force,
                }
            }
            "pause" => {
                let service = match w.peek() {
                    Some("--all") => {
                        w.next();
                        None
                    }
                    Some(s) if !s.starts_with('-') => {
                        w.next();
                        Some(s.to_string())
                    }
                    _ => None,
                };
                let (for_, reason, force) = w.for_and_reason()?;
                Command::Pause {
                    service,
                    for_,
                    reason,
                    force,
                }
            }
            "run" => {
                let s = w.next().map(str::to_string);
                Command::Run(s)
            }
            "unit_stopping" | "unit_started" => {
                let unit = w
                    .next()
                    .map(str::to_string)
                    .ok_or_else(|| missing("UNIT"))?;
                if name == "unit_stopping" {
                    Command::UnitStopping(unit)
                } else {
                    Command::UnitStarted(unit)
                }
            }
            "test" => Command::Test(service(&mut w)?),
            "disable_test" => Command::DisableTest(service(&mut w)?),
            "enable_test" => Command::EnableTest(service(&mut w)?),
            "reload" => Command::Reload,
            "stop_server" => Command::StopServer,
            "metrics" => Command::Metrics,
            other => {
                return Err(UsageError::UnknownCommand {
                    word: other.into(),
                    hint: closest_command(other),
                })
            }
        };
        w.end(usage)?;
        Ok(cmd)
    }

    /// Reading is open to anyone who can connect; everything else needs authorisation.
    /// What a changing command asks to do, for [`crate::auth`]: the service it changes (None:
    /// every service, or the daemon) and its verb. None for the commands that only read.
    pub fn request(&self) -> Option<crate::auth::Request> {
        use crate::auth::Request;
        let one = |s: &String, verb| Some(Request::service(s, verb));
        match self {
            Command::Help(_) | Command::Version | Command::Status { .. } | Command::Metrics => None,
            Command::Enable(s) => one(s, "enable"),
            Command::Disable { service, .. } => one(service, "disable"),
            Command::Pause {
                service: Some(s), ..
            } => one(s, "pause"),
            Command::Pause { service: None, .. } => Some(Request::daemon("pause")),
            Command::Run(Some(s)) => one(s, "run"),
            Command::Run(None) => Some(Request::daemon("run")),
            Command::Test(s) => one(s, "test"),
            Command::DisableTest(s) => one(s, "disable_test"),
            Command::EnableTest(s) => one(s, "enable_test"),
            Command::Reload => Some(Request::daemon("reload")),
            Command::StopServer => Some(Request::daemon("stop_server")),
            // Every service that follows the unit: asked of the daemon as a whole (the drain
            // unit runs them as root).
            Command::UnitStopping(_) => Some(Request::daemon("unit_stopping")),
            Command::UnitStarted(_) => Some(Request::daemon("unit_started")),
            Command::Wait { cmd, .. } => cmd.request(),
        }
    }

    pub fn changes_state(&self) -> bool {
        match self {
            Command::Wait { cmd, .. } => cmd.changes_state(),
            c => !matches!(
                c,
                Command::Help(_) | Command::Version | Command::Status { .. } | Command::Metrics
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Command, String> {
        Command::parse(&shlex::split(line).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(
            p("status").unwrap(),
            Command::Status {
                service: None,
                json: false
            }
        );
        assert_eq!(
            p("status web --json").unwrap(),
            Command::Status {
                service: Some("web".into()),
                json: true
            }
        );
        assert_eq!(
            p("disable web --for 30m 'deploy v2' now").unwrap(),
            Command::Disable {
                service: "web".into(),
                for_: Some(Duration::from_secs(1800)),
                reason: "deploy v2 now".into(),
                force: false
            }
        );
        assert_eq!(
            p("disable web -- --for is not an option here").unwrap(),
            Command::Disable {
                service: "web".into(),
                for_: None,
                reason: "--for is not an option here".into(),
                force: false
            }
        );
        assert_eq!(
            p("pause").unwrap(),
            Command::Pause {
                service: None,
                for_: None,
                reason: String::new(),
                force: false
            }
        );
        assert_eq!(
            p("pause --all --for 1h maintenance").unwrap(),
            Command::Pause {
                service: None,
                for_: Some(Duration::from_secs(3600)),
                reason: "maintenance".into(),
                force: false
            }
        );
        assert_eq!(p("run db").unwrap(), Command::Run(Some("db".into())));
        assert_eq!(p("test db").unwrap(), Command::Test("db".into()));
        assert_eq!(
            p("help status").unwrap(),
            Command::Help(Some("status".into()))
        );
        for c in [
            "reload",
            "stop_server",
            "version",
            "disable_test a",
            "enable_test a",
        ] {
            assert!(p(c).is_ok(), "{c}");
        }
    }

    #[test]
    fn wait_wraps_the_four_commands() {
        assert_eq!(
            p("disable web --wait deploy --timeout 2m").unwrap(),
            Command::Wait {
                cmd: Box::new(Command::Disable {
                    service: "web".into(),
                    for_: None,
                    reason: "deploy".into(),
                    force: false
                }),
                timeout: Duration::from_secs(120),
                drained: false
            }
        );
        assert_eq!(
            p("enable web --wait").unwrap(),
            Command::Wait {
                cmd: Box::new(Command::Enable("web".into())),
                timeout: Duration::from_secs(60),
                drained: false
            }
        );
        assert!(matches!(p("run --wait").unwrap(), Command::Wait { .. }));
        assert_eq!(
            p("disable web -- --wait").unwrap(),
            Command::Disable {
                service: "web".into(),
                for_: None,
                reason: "--wait".into(),
                force: false
            }
        );
        assert_eq!(
            p("disable web --wait=drained --force deploy").unwrap(),
            Command::Wait {
                cmd: Box::new(Command::Disable {
                    service: "web".into(),
                    for_: None,
                    reason: "deploy".into(),
                    force: true
                }),
                timeout: Duration::from_secs(60),
                drained: true
            }
        );
        assert!(matches!(
            p("pause --wait=drained --timeout 5m").unwrap(),
            Command::Wait { drained: true, .. }
        ));
        assert!(p("enable web --wait=drained")
            .unwrap_err()
            .contains("=drained on disable, pause and unit_stopping"));
        assert!(p("disable web --wait=soon").is_err());
        assert!(p("enable web --force").is_err());
        assert!(p("enable web --timeout 3s")
            .unwrap_err()
            .contains("--timeout goes with --wait"));
        assert!(p("status --wait").is_err());
        assert!(!p("metrics").unwrap().changes_state());
        assert!(p("enable a --wait").unwrap().changes_state());
    }

    #[test]
    fn usage_errors_are_clear() {
        assert_eq!(
            p("frobnicate").unwrap_err(),
            "unknown command 'frobnicate'; 'help' lists the commands"
        );
        // A misspelt command is named, as a misspelt option is.
        assert_eq!(
            p("disbale web deploy").unwrap_err(),
            "unknown command 'disbale' (did you mean 'disable'?); 'help' lists the commands"
        );
        assert_eq!(
            help_text(Some("stauts")).unwrap_err().to_string(),
            "unknown command 'stauts' (did you mean 'status'?); 'help' lists them"
        );
        assert!(p("enable")
            .unwrap_err()
            .contains("missing SERVICE; usage: enable SERVICE"));
        assert!(p("enable a b").unwrap_err().contains("unexpected 'b'"));
        assert!(p("disable a --for")
            .unwrap_err()
            .contains("--for needs a DURATION"));
        assert!(p("disable a --for soon")
            .unwrap_err()
            .contains("bad duration 'soon'"));
        assert!(p("run a b").is_err());
        assert!(Command::parse(&[]).is_err());
    }

    #[test]
    fn usage_errors_are_typed() {
        let e = |line: &str| Command::parse(&shlex::split(line).unwrap()).unwrap_err();
        assert_eq!(
            e("enable"),
            UsageError::Missing {
                what: "SERVICE",
                usage: usage_of("enable")
            }
        );
        assert_eq!(
            e("pause --al"),
            UsageError::UnknownOption {
                word: "--al".into(),
                hint: Some("--all"),
                reason_after_dashes: true,
                usage: usage_of("pause")
            }
        );
        assert_eq!(
            e("disable a --for 0s"),
            UsageError::Duration(DurationError::Zero { text: "0s".into() })
        );
        assert!(matches!(
            parse_duration("soon"),
            Err(DurationError::Unreadable { .. })
        ));
        assert_eq!(
            e("x"),
            UsageError::UnknownCommand {
                word: "x".into(),
                hint: None
            }
        );
    }

    #[test]
    fn unknown_options_are_usage_errors_with_a_hint() {
        let e = p("disable web --wiat deploy v3").unwrap_err();
        assert!(
            e.starts_with("unknown option '--wiat' (did you mean '--wait'?); a REASON"),
            "{e}"
        );
        assert!(p("pause --al")
            .unwrap_err()
            .contains("did you mean '--all'?"));
        assert!(p("status --jsno")
            .unwrap_err()
            .contains("did you mean '--json'?"));
        assert!(p("status --sockt x")
            .unwrap_err()
            .contains("did you mean '--socket'?"));
        assert!(p("enable web -x")
            .unwrap_err()
            .starts_with("unknown option '-x'; usage"));
        assert!(p("test web --wait")
            .unwrap_err()
            .contains("unknown option '--wait'"));
        assert!(p("pause -x").is_err());
        assert!(p("disable web --wait=drainde deploy")
            .unwrap_err()
            .starts_with("'--wait=drainde' (did you mean '--wait=drained'?): --wait takes"));
        assert!(p("disable web --for=1h --timeout=5s --wait").is_ok());
        assert_eq!(
            p("disable web deploy - v3 -- -x").unwrap(),
            Command::Disable {
                service: "web".into(),
                for_: None,
                reason: "deploy - v3 -x".into(),
                force: false
            }
        );
    }

    #[test]
    fn only_reads_are_open() {
        assert!(!p("status").unwrap().changes_state());
        assert!(!p("help").unwrap().changes_state());
        assert!(p("disable a").unwrap().changes_state());
        assert!(p("test a").unwrap().changes_state());
    }

    #[test]
    fn status_lines_round_trip() {
        for c in [Code::Ok, Code::Refused, Code::Usage, Code::Failed] {
            assert_eq!(Code::from_status_line(&c.status_line()), Some(c));
        }
        assert_eq!(Code::from_status_line("HTTP/1.0 200"), None);
    }
}
