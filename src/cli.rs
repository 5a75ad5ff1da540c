//! The command line: the daemon modes (-d, -D, -t) and the client (-c).

use crate::config::DEFAULT_CONFIG;
use clap::{ArgGroup, Parser};
use std::path::PathBuf;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "psentinel",
    version,
    about = "Health-check agent between HAProxy and back-end services",
    long_about = "Answers HAProxy's health probes for each configured service from memory \
                  (200 healthy, 500 check failing, 503 disabled or paused), runs each service's \
                  check script in the background, and obeys operators' commands.",
    after_help = "Client commands: psentinel -c help",
    group(ArgGroup::new("mode").required(true).args(["daemon", "debug", "command", "test_config", "generate_sockets"]))
)]
pub struct Cli {
    /// Run the daemon; it detaches and writes pid_file unless started by systemd or --foreground
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    /// Run the daemon in the foreground with debug messages on stderr
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,

    /// Send COMMAND [ARG...] to the running daemon and print its answer ("-c help" lists them)
    #[arg(short = 'c', long = "command", value_name = "COMMAND", num_args = 1.., allow_hyphen_values = true)]
    pub command: Option<Vec<String>>,

    /// Check the configuration file, and that each check program can run, and exit: 0 valid
    /// (warnings on stderr), 1 invalid (every error listed)
    #[arg(short = 't', long = "test-config")]
    pub test_config: bool,

    /// Configuration file
    #[arg(short = 'f', long = "config", value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Control socket for -c (default: sock_file of the configuration)
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// With -c status: print one JSON object
    #[arg(long)]
    pub json: bool,

    /// With -d: stay in the foreground
    #[arg(long)]
    pub foreground: bool,

    /// Write the psentinel.socket drop-in with every probe port of the configuration into DIR
    /// (used by the systemd generator)
    #[arg(long, value_name = "DIR")]
    pub generate_sockets: Option<PathBuf>,
}

impl Cli {
    /// Options may also follow the command (`psentinel -c version -f FILE`): take -f,
    /// --config, --socket and --json out of the command's words, up to a `--`.
    pub fn normalize(mut self) -> Result<Self, CliError> {
        let Some(words) = self.command.take() else {
            return Ok(self);
        };
        let mut out = Vec::new();
        let mut it = words.into_iter();
        while let Some(w) = it.next() {
            let mut value_of = |flag: &str| {
                it.next()
                    .ok_or_else(|| CliError::NeedsValue(flag.to_string()))
            };
            match w.as_str() {
                "--" => {
                    out.push(w);
                    out.extend(it.by_ref());
                }
                "-f" | "--config" => self.config = value_of(&w)?.into(),
                "--socket" => self.socket = Some(value_of(&w)?.into()),
                "--json" => self.json = true,
                _ if w.starts_with("--config=") => self.config = w[9..].into(),
                _ if w.starts_with("--socket=") => self.socket = Some(w[9..].into()),
                _ if w.starts_with("-f") && w.len() > 2 => self.config = w[2..].into(),
                _ => out.push(w),
            }
        }
        if self.json {
            if out.first().map(String::as_str) != Some("status") {
                return Err(CliError::JsonWithoutStatus);
            }
            out.push("--json".into());
        }
        if out.is_empty() {
            return Err(CliError::NoCommand);
        }
        self.command = Some(out);
        Ok(self)
    }
}

/// A command line clap accepts that still says nothing runnable (`-c` without a command).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    #[error("{0} needs a value")]
    NeedsValue(String),
    #[error("--json goes with the status command")]
    JsonWithoutStatus,
    #[error("-c needs a COMMAND (psentinel -c help lists them)")]
    NoCommand,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .normalize()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn what_clap_lets_through_is_a_typed_error() {
        let n = |args: &[&str]| Cli::try_parse_from(args).unwrap().normalize().unwrap_err();
        assert_eq!(
            n(&["psentinel", "-c", "status", "-f"]),
            CliError::NeedsValue("-f".into())
        );
        assert_eq!(
            n(&["psentinel", "-c", "enable", "x", "--json"]),
            CliError::JsonWithoutStatus
        );
        assert_eq!(
            n(&["psentinel", "-c", "--json"]),
            CliError::JsonWithoutStatus
        );
        assert_eq!(n(&["psentinel", "-c", "-f", "x"]), CliError::NoCommand);
        assert_eq!(
            CliError::NeedsValue("--socket".into()).to_string(),
            "--socket needs a value"
        );
    }

    #[test]
    fn options_after_the_command() {
        let c = cli(&["psentinel", "-c", "version", "-f", "/home/p.cfg"]).unwrap();
        assert_eq!(c.command.unwrap(), ["version"]);
        assert_eq!(c.config, PathBuf::from("/home/p.cfg"));
        let c = cli(&[
            "psentinel",
            "-c",
            "status",
            "web",
            "--json",
            "--socket",
            "/s",
        ])
        .unwrap();
        assert_eq!(c.command.unwrap(), ["status", "web", "--json"]);
        assert_eq!(c.socket.unwrap(), PathBuf::from("/s"));
        let c = cli(&[
            "psentinel",
            "-c",
            "disable",
            "web",
            "--for",
            "30m",
            "--",
            "-f",
            "x",
        ])
        .unwrap();
        assert_eq!(
            c.command.unwrap(),
            ["disable", "web", "--for", "30m", "--", "-f", "x"]
        );
    }

    #[test]
    fn modes_exclude_each_other() {
        assert!(cli(&["psentinel", "-d", "-c", "status"]).is_err());
        assert!(cli(&["psentinel"]).is_err());
        assert!(
            cli(&["psentinel", "-d", "-f/etc/psentinel.cfg"])
                .unwrap()
                .daemon
        );
        assert!(cli(&["psentinel", "-c", "enable", "x", "--json"]).is_err());
    }
}
