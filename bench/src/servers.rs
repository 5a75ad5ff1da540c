//! The servers under test, each started fresh as a child process on a port of its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("psentinel-bench.{}.{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub child: Child,
    _scratch: Scratch,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait (callgrind writes its file at exit); returns the server's stderr.
    pub fn stop(mut self) -> String {
        kill(self.child.id(), libc::SIGTERM);
        let t0 = std::time::Instant::now();
        let mut poked = t0;
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            // nginx under valgrind can sleep through the signal in epoll_wait: a connection
            // wakes its event loop, which then sees the pending stop.
            if poked.elapsed() > Duration::from_secs(2) {
                let _ = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
                poked = std::time::Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        std::fs::read_to_string(self._scratch.0.join("stderr")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn kill(pid: u32, sig: i32) {
    // SAFETY: a plain syscall on a pid we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A port the kernel says is free now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Prefix for running a server under callgrind, writing to `out`.
pub fn callgrind(out: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out.display()),
    ]
}

fn spawn(
    name: &str,
    prefix: &[String],
    argv: Vec<String>,
    env: &[(&str, &str)],
    port: u16,
    scratch: Scratch,
) -> Server {
    let all: Vec<String> = prefix.iter().cloned().chain(argv).collect();
    let mut cmd = Command::new(&all[0]);
    cmd.args(&all[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(scratch.0.join("stderr")).expect("stderr file"),
        ))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("JOURNAL_STREAM");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", all[0]));
    let server = Server {
        name: name.into(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        child,
        _scratch: scratch,
    };
    let wait = if prefix.is_empty() { 10 } else { 120 };
    if let Err(e) = crate::load::wait_answering(server.addr, Duration::from_secs(wait)) {
        let log = std::fs::read_to_string(server._scratch.0.join("stderr")).unwrap_or_default();
        panic!("{name} does not answer on {}: {e}\n{log}", server.addr);
    }
    server
}

pub fn floor(prefix: &[String]) -> Server {
    let port = free_port();
    let me = std::env::current_exe().expect("own path");
    spawn(
        "floor",
        prefix,
        vec![me.display().to_string(), "floor".into(), port.to_string()],
        &[],
        port,
        Scratch::new("floor"),
    )
}

/// psentinel config: `services` services without a check (so every probe answers 200), all on
/// 127.0.0.1; the first one on the returned port.
pub fn psentinel_config(dir: &Path, ports: &[u16], check: Option<&str>) -> PathBuf {
    let mut cfg = format!(
        "[general]\nlog_level=1\npid_file={0}/p.pid\nsock_file={0}/p.sock\nstate_dir={0}/state\ndbus=off\n",
        dir.display()
    );
    for (i, p) in ports.iter().enumerate() {
        cfg.push_str(&format!("[svc{i}]\nport={p}\nbind=127.0.0.1\n"));
        if let Some(c) = check {
            cfg.push_str(&format!("check_script={c}\n"));
        }
    }
    let path = dir.join("psentinel.cfg");
    std::fs::write(&path, cfg).expect("write psentinel config");
    path
}

pub fn psentinel(bin: &Path, name: &str, env: &[(&str, &str)], prefix: &[String]) -> Server {
    let port = free_port();
    let scratch = Scratch::new(name);
    let cfg = psentinel_config(&scratch.0, &[port], None);
    spawn(
        name,
        prefix,
        vec![
            bin.display().to_string(),
            "-d".into(),
            "--foreground".into(),
            "-f".into(),
            cfg.display().to_string(),
        ],
        env,
        port,
        scratch,
    )
}

pub fn nginx_path() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// nginx, one process (`master_process off`), `return 200` for everything.
pub fn nginx(bin: &Path, prefix: &[String]) -> Server {
    let port = free_port();
    let scratch = Scratch::new("nginx");
    let d = scratch.0.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log;\nevents {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200; }} }}\n}}\n"
    );
    std::fs::write(scratch.0.join("nginx.conf"), conf).expect("write nginx.conf");
    let argv = vec![
        bin.display().to_string(),
        "-p".into(),
        d.to_string(),
        "-e".into(),
        format!("{d}/error.log"),
        "-c".into(),
        format!("{d}/nginx.conf"),
    ];
    spawn("nginx", prefix, argv, &[], port, scratch)
}

/// utime + stime of a process (all its threads), in microseconds.
pub fn cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    ticks * 1_000_000 / clk_tck()
}

#[allow(unsafe_code)]
fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}
