//! `psentinel`: parse the command line, pick the mode, print errors with their causes.

use anyhow::Context;
use clap::Parser;
use psentinel::cli::Cli;
use psentinel::config::{Config, ConfigError};
use psentinel::{control, daemon, detach, last_good, lint, logging, sockets, systemd};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::parse().normalize() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("psentinel: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(words) = &cli.command {
        return ExitCode::from(control::client::run(&client_socket(&cli), words));
    }
    if let Some(dir) = &cli.generate_sockets {
        return generate_sockets(&cli, dir);
    }
    if cli.test_config {
        return test_config(&cli);
    }
    let loaded = Config::load(&cli.config);
    // A broken file does not stop a daemon that ran before: it runs on the last good copy.
    let (cfg, broken) = match loaded {
        Ok(c) => (c, None),
        Err(e) => match last_good::load(&cli.config) {
            Some((c, copy)) => (c, Some((e.to_string(), copy))),
            None => {
                eprintln!(
                    "psentinel: {e}\npsentinel: no last good configuration to run on ({} \
                     missing or broken): not starting",
                    last_good::fallback_path().display()
                );
                return ExitCode::from(1);
            }
        },
    };
    run_daemon(&cli, cfg, broken)
}

/// Serves until stopped. `broken`: the configuration file's error and the last good copy
/// `cfg` comes from instead. A fatal error is reported once: on stderr before logging is set
/// up, through logging after (which is stderr or the journal; both would say it twice).
fn run_daemon(cli: &Cli, cfg: Config, broken: Option<(String, std::path::PathBuf)>) -> ExitCode {
    let detaching = cli.daemon && !cli.foreground && !systemd::under_systemd();
    let mut ready = if detaching {
        match detach::detach() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("psentinel: {e:#}");
                return ExitCode::from(1);
            }
        }
    } else {
        detach::ReadyPipe::none()
    };
    let level = if cli.debug {
        logging::level(cfg.general.log_level.max(3))
    } else {
        logging::level(cfg.general.log_level)
    };
    logging::init(level);
    let notes = systemd::Notes::default();
    if let Some((e, copy)) = &broken {
        tracing::error!(
            config = %cli.config.display(),
            "{e}; running on the last good configuration ({}) until the file is fixed and \
             reloaded",
            copy.display()
        );
        notes.set(
            systemd::Note::LastGood,
            Some(format!("running on last good configuration: {e}")),
        );
    }
    let remember = broken.is_none().then(|| cfg.clone());
    let result = (|| {
        let _pid = if detaching {
            Some(detach::PidFile::create(&cfg.general.pid_file)?)
        } else {
            None
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        rt.block_on(daemon::run(
            cfg,
            sockets::Sockets::from_env(),
            shutdown,
            notes,
            || {
                ready.ready();
                if let Some(cfg) = &remember {
                    last_good::remember(cfg);
                }
            },
        ))
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ready.failed(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

/// `-t`: every error of the files and what they cannot say by themselves (see [`lint`]), in
/// one run: an operator fixing a file does not want a second round of findings once the first
/// is fixed. Lint looks at the configuration as far as it reads. Errors exit 1.
fn test_config(cli: &Cli) -> ExitCode {
    let (cfg, mut errors) = match Config::load_checked(&cli.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("psentinel: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg = &cfg;
    let found = lint::check(cfg);
    errors.extend(found.errors);
    let failed = !errors.is_empty();
    if let Some(e) = ConfigError::gather(&cli.config, errors) {
        eprintln!("psentinel: {e}");
    }
    for w in &found.warnings {
        eprintln!("psentinel: warning: {w}");
    }
    if failed {
        return ExitCode::from(1);
    }
    let count = |n: usize, what: &str| psentinel::view::count(n as u64, what);
    // The fragments by name: what was read is what an operator checks -t for.
    let files = match cfg.fragments.len() {
        0 => cli.config.display().to_string(),
        n => format!(
            "{} and {} ({})",
            cli.config.display(),
            count(n, "drop-in fragment"),
            cfg.fragments
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut summary = format!("{files}: OK, {}", count(cfg.services.len(), "service"));
    if !found.warnings.is_empty() {
        summary += &format!(", {}", count(found.warnings.len(), "warning"));
    }
    println!("{summary}");
    ExitCode::SUCCESS
}

/// --socket, else sock_file of the configuration, else the default.
fn client_socket(cli: &Cli) -> std::path::PathBuf {
    cli.socket
        .clone()
        .or_else(|| Config::sock_file_of(&cli.config))
        .unwrap_or_else(|| psentinel::config::General::default().sock_file)
}

/// Run by the systemd generator at boot and daemon-reload: never fails the boot.
fn generate_sockets(cli: &Cli, dir: &std::path::Path) -> ExitCode {
    let cfg = match Config::load(&cli.config) {
        Ok(c) => c,
        // The daemon will run on the last good copy: the socket unit holds its ports.
        Err(e) => match last_good::load(&cli.config) {
            Some((c, copy)) => {
                eprintln!(
                    "psentinel-generator: {e}; using the ports of the last good configuration {}",
                    copy.display()
                );
                c
            }
            None => {
                eprintln!("psentinel-generator: {e}; probe ports not added to psentinel.socket");
                return ExitCode::SUCCESS;
            }
        },
    };
    let d = dir.join("psentinel.socket.d");
    let res = std::fs::create_dir_all(&d)
        .and_then(|_| std::fs::write(d.join("50-ports.conf"), sockets::socket_dropin(&cfg)));
    if let Err(e) = res {
        eprintln!("psentinel-generator: cannot write {}: {e}", d.display());
    }
    ExitCode::SUCCESS
}
