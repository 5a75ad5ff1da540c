//! Listening sockets: adopted from systemd when it passed them, bound by us otherwise.
//!
//! systemd passes sockets in whatever order the socket unit lists them, so each is matched by
//! what it is, never by position or spelling: a TCP socket by the address it is bound to
//! (`getsockname`, an IPv4-mapped `[::ffff:a.b.c.d]` taken as `a.b.c.d`), a Unix socket by
//! the file it is bound to (device and inode), so `sock_file=/var/run/psentinel/psentinel.sock`
//! finds the socket the unit bound at `/run/psentinel/psentinel.sock` through Debian's
//! `/var/run -> /run` link. A service that listens on every address matches a passed
//! `[::]:PORT` or `0.0.0.0:PORT`. Passed sockets no service wants are kept (a reload may want
//! them) and reported once.

use crate::config::Config;
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};

/// Listen backlog for probe ports: HAProxy fleets probe in bursts (every node, every backend,
/// at once after a reload), and connections waiting here are answered, never refused.
pub const BACKLOG: u32 = 4096;

#[derive(Default)]
pub struct Sockets {
    tcp: BTreeMap<SocketAddr, std::net::TcpListener>,
    unix: BTreeMap<PathBuf, StdUnixListener>,
    /// Passed sockets of a kind we do not use (UDP...), for the warning.
    other: usize,
    /// Started by socket activation: a port we must bind ourselves is one the socket unit
    /// does not hold yet.
    activated: bool,
}

impl Sockets {
    /// Takes the sockets systemd passed (LISTEN_FDS), if any.
    pub fn from_env() -> Sockets {
        let mut fds = listenfd::ListenFd::from_env();
        let mut s = Sockets {
            activated: fds.len() > 0,
            ..Sockets::default()
        };
        for i in 0..fds.len() {
            if let Ok(Some(l)) = fds.take_tcp_listener(i) {
                match l.local_addr() {
                    Ok(a) => {
                        s.tcp.insert(canonical(a), l);
                    }
                    Err(e) => tracing::warn!("passed socket #{i}: cannot read its address: {e}"),
                }
            } else if let Ok(Some(l)) = fds.take_unix_listener(i) {
                match l
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                {
                    Some(p) => {
                        s.unix.insert(p, l);
                    }
                    None => {
                        tracing::warn!("passed socket #{i}: Unix socket without a path, ignored")
                    }
                }
            } else {
                s.other += 1;
            }
        }
        if fds.len() > 0 {
            tracing::info!("systemd passed {} sockets: {}", fds.len(), s.describe());
        }
        s
    }

    /// "tcp [::]:48080, unix /run/psentinel/psentinel.sock": for the log.
    fn describe(&self) -> String {
        let mut parts: Vec<String> = self.tcp.keys().map(|a| format!("tcp {a}")).collect();
        parts.extend(self.unix.keys().map(|p| format!("unix {}", p.display())));
        if self.other > 0 {
            parts.push(format!("{} of another kind", self.other));
        }
        parts.join(", ")
    }

    /// The passed Unix socket bound at `path`, if systemd passed one: the same file, whatever
    /// the path says (symbolic links, `..`), compared by device and inode.
    pub fn take_unix(&mut self, path: &Path) -> Option<StdUnixListener> {
        if let Some(l) = self.unix.remove(path) {
            return Some(l);
        }
        let want = file_id(path)?;
        let found = self.unix.keys().find(|p| file_id(p) == Some(want))?.clone();
        tracing::info!(
            "sock_file {} is the passed socket {}",
            path.display(),
            found.display()
        );
        self.unix.remove(&found)
    }

    /// A listening TCP socket for `addr`: the passed one, else a fresh bind.
    pub fn tcp(&mut self, addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
        let addr = canonical(addr);
        let passed = self.tcp.remove(&addr).or_else(|| {
            if addr.ip().is_unspecified() {
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
                self.tcp.remove(&v4)
            } else {
                None
            }
        });
        if let Some(l) = passed {
            l.set_nonblocking(true)?;
            return tokio::net::TcpListener::from_std(l);
        }
        if self.activated {
            tracing::warn!(
                "{addr} is not in psentinel.socket: psentinel binds it itself, and probes on it \
                 are refused while psentinel restarts; `systemctl daemon-reload && systemctl \
                 restart psentinel.socket psentinel.service` adds it"
            );
        }
        match bind(addr) {
            // No IPv6 on this host: "every address" means every IPv4 address.
            Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
                bind(v4).map_err(|e4| io::Error::new(e4.kind(), format!("{e4} (and on [::]: {e})")))
            }
            r => r,
        }
    }

    /// Logs passed sockets that no service uses.
    pub fn warn_unused(&self) {
        for a in self.tcp.keys() {
            tracing::warn!(
                "systemd passed a socket on {a} that no service in the configuration uses"
            );
        }
        for p in self.unix.keys() {
            tracing::warn!(
                "systemd passed a Unix socket {} that is not sock_file",
                p.display()
            );
        }
        if self.other > 0 {
            tracing::warn!(
                "systemd passed {} socket(s) of a kind psentinel does not use",
                self.other
            );
        }
    }
}

/// The device and inode of the file at `path` (following links), what identifies a socket file.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// One spelling per address: `[::ffff:127.0.0.1]:80` is `127.0.0.1:80`.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let s = if addr.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(BACKLOG)
}

/// The socket unit drop-in that makes systemd hold every probe and agent port of `cfg`
/// (`psentinel --generate-sockets DIR`, run by the systemd generator).
pub fn socket_dropin(cfg: &Config) -> String {
    let mut out = format!("# Generated by psentinel from {}", cfg.file.display());
    for f in cfg.fragments.iter() {
        out += &format!("\n# and {}", f.display());
    }
    out += "; edit the configuration, not this file.\n[Socket]\n";
    for svc in cfg.services.values() {
        for port in std::iter::once(svc.port).chain(svc.agent_port) {
            let line = match svc.bind {
                None => format!("ListenStream={port}\n"),
                Some(ip) => format!("ListenStream={}\n", SocketAddr::new(ip, port)),
            };
            out.push_str(&line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The socket unit binds /run/...; the configuration says /var/run/... (a link to /run).
    #[test]
    fn unix_socket_found_through_a_symlinked_directory() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::os::unix::fs::symlink(&run, dir.path().join("var-run")).unwrap();
        let real = run.join("p.sock");
        let mut s = Sockets::default();
        s.unix
            .insert(real.clone(), StdUnixListener::bind(&real).unwrap());
        assert!(s.take_unix(&dir.path().join("var-run/p.sock")).is_some());
        assert!(s.unix.is_empty());
        // Another file of the same name elsewhere is not the passed socket.
        let other = dir.path().join("p.sock");
        let _l = StdUnixListener::bind(&other).unwrap();
        let q = run.join("q.sock");
        s.unix.insert(q.clone(), StdUnixListener::bind(&q).unwrap());
        assert!(s.take_unix(&other).is_none());
        assert_eq!(s.unix.len(), 1);
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        assert_eq!(canonical(mapped), "127.0.0.1:80".parse().unwrap());
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn dropin_lists_every_port() {
        let cfg = Config::parse(
            "[a]\nport=1001\nagent_port=1002\n[b]\nport=1003\nbind=127.0.0.1\n",
            Path::new("/etc/p.cfg"),
        )
        .unwrap();
        let d = socket_dropin(&cfg);
        assert!(
            d.contains("ListenStream=1001\nListenStream=1002\nListenStream=127.0.0.1:1003\n"),
            "{d}"
        );
    }
}
