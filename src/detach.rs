//! Classic daemon start-up for `psentinel -d` outside systemd: fork, new session, pid file.
//!
//! The parent waits on a pipe until the child is serving (or failed), so `psentinel -d`
//! returns 0 only when the daemon answers, and prints the child's start-up error otherwise —
//! the same promise READY=1 gives under systemd.

use anyhow::Context;
use std::io::{Read, Write};

use std::path::{Path, PathBuf};

/// The child's side: report once, then done.
pub struct ReadyPipe(Option<std::fs::File>);

impl ReadyPipe {
    pub fn none() -> ReadyPipe {
        ReadyPipe(None)
    }

    pub fn ready(&mut self) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(b"ok");
        }
    }

    pub fn failed(&mut self, why: &str) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(why.as_bytes());
        }
    }
}

/// Forks. Returns in the child (detached, stdio on /dev/null); the parent exits with the
/// child's verdict. Must run before any thread exists (before the tokio runtime).
#[allow(unsafe_code)]
pub fn detach() -> anyhow::Result<ReadyPipe> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    // SAFETY: called from main before the runtime or any other thread starts, so the child
    // inherits a consistent single-threaded process.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(wr);
            let mut verdict = String::new();
            let _ = std::fs::File::from(rd).read_to_string(&mut verdict);
            if verdict == "ok" {
                std::process::exit(0);
            }
            if verdict.is_empty() {
                verdict = "the daemon exited during start-up".into();
            }
            eprintln!("psentinel: {verdict}");
            std::process::exit(1);
        }
        nix::unistd::ForkResult::Child => {
            drop(rd);
            nix::unistd::setsid().context("setsid")?;
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")?;
            for fd in 0..=2 {
                nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd).context("dup2")?;
            }
            Ok(ReadyPipe(Some(std::fs::File::from(wr))))
        }
    }
}

/// Written once serving; removed on exit.
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(path: &Path) -> anyhow::Result<PidFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid_file {}", path.display()))?;
        Ok(PidFile(path.into()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
