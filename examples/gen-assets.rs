//! Generates what the packages ship besides the binary, from the clap definition itself so
//! it never drifts from `psentinel --help`: the man page psentinel(8) and the bash, zsh and
//! fish completions.
//!
//! `cargo run --example gen-assets -- OUTDIR` (the Makefile's `assets` target) writes
//! OUTDIR/psentinel.8 and OUTDIR/completions/{psentinel.bash,_psentinel,psentinel.fish}.
//!
//! An example rather than a hidden `psentinel --man` flag or a build script: clap_mangen and
//! clap_complete stay dev-dependencies, so the shipped binary neither grows nor carries a
//! flag that is not part of the product, and the build script does not have to compile
//! `src/cli.rs` (which uses the config module) outside the crate.

use clap::CommandFactory;
use clap_complete::Shell;
use psentinel::cli::Cli;
use psentinel::config::DEFAULT_CONFIG;
use psentinel::control::proto::COMMANDS;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: gen-assets OUTDIR");
        return ExitCode::from(2);
    };
    match generate(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-assets: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> std::io::Result<()> {
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    let mut page = Vec::new();
    man_page(&mut page)?;
    write_if_changed(&out.join("psentinel.8"), &page)?;
    for (shell, file) in [
        (Shell::Bash, "psentinel.bash"),
        (Shell::Zsh, "_psentinel"),
        (Shell::Fish, "psentinel.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "psentinel", &mut buf);
        write_if_changed(&completions.join(file), &buf)?;
    }
    Ok(())
}

/// Keeps the mtime of unchanged files, so `make` does not re-stage or re-package for nothing.
fn write_if_changed(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    std::fs::write(path, content)
}

/// clap_mangen's sections (name, synopsis, description, options, version), then what an
/// operator looks for in section 8 and clap does not know: the client commands (from the
/// same table the daemon's `help` prints), exit status, files, signals.
fn man_page(w: &mut Vec<u8>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(Cli::command())
        .section("8")
        .manual("System Manager's Manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;

    writeln!(w, ".SH \"CLIENT COMMANDS\"")?;
    writeln!(
        w,
        "{}",
        text(
            "psentinel -c COMMAND [ARG...] sends one command to the running daemon over its \
              control socket. Anyone who can connect may read (help, version, status); \
              every other command is allowed to root, the daemon's own user and members of \
              control_group only."
        )
    )?;
    for (_, usage, what) in COMMANDS {
        writeln!(w, ".TP\n\\fB{}\\fR\n{}", text(usage), text(what))?;
    }
    writeln!(
        w,
        ".PP\n{}",
        text("Durations for --for: 90s, 30m, 2h, 1d. A reason that starts with - goes after --.")
    )?;

    writeln!(w, ".SH \"EXIT STATUS\"")?;
    for (code, what) in [
        ("0", "done; with -t: the configuration is valid"),
        (
            "1",
            "the daemon refused the command or cannot be reached; with -t or -d: invalid \
             configuration or the daemon could not start",
        ),
        ("2", "usage error"),
    ] {
        writeln!(w, ".TP\n\\fB{code}\\fR\n{}", text(what))?;
    }

    writeln!(w, ".SH SIGNALS")?;
    writeln!(
        w,
        "{}",
        text(
            "SIGTERM and SIGINT stop the daemon gracefully (checks are killed, state saved); \
              SIGHUP re-reads the configuration, and a bad file is refused while the \
              running one stays."
        )
    )?;

    writeln!(w, ".SH FILES")?;
    for (file, what) in [
        (DEFAULT_CONFIG, "the configuration (INI), described in psentinel.cfg(5); examples in /usr/share/doc/psentinel/examples/"),
        ("/run/psentinel/psentinel.sock", "the control socket (sock_file)"),
        ("/var/lib/psentinel/", "operators' state (disabled, paused, reason, who, until) and last check results, kept across restarts"),
        ("/usr/lib/systemd/system/psentinel.service, psentinel.socket", "the systemd units; the socket unit holds the control socket and every probe port"),
        ("/usr/lib/systemd/system-generators/psentinel-generator", "adds the probe ports of the configuration to psentinel.socket at boot and on systemctl daemon-reload"),
    ] {
        writeln!(w, ".TP\n\\fI{}\\fR\n{}", text(file), text(what))?;
    }

    writeln!(w, ".SH \"SEE ALSO\"")?;
    writeln!(
        w,
        "\\fBpsentinel.cfg\\fR(5), \\fBsystemctl\\fR(1), \\fBsystemd.socket\\fR(5), \\fBhaproxy\\fR(1), /usr/share/doc/psentinel/README.md"
    )?;
    man.render_version_section(w)?;
    Ok(())
}

/// Plain text as roff: backslashes and hyphens escaped, no line starting with a control
/// character.
fn text(s: &str) -> String {
    let escaped = s.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}
