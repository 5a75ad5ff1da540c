//! `status` for people and for programs, rendered from one snapshot.
//!
//! [`ServiceStatus`] is the one flat record every interface shows: `status --json`, D-Bus
//! `Status()` and properties. Field names are a contract with scripts and D-Bus clients
//! (docs/commands.md, docs/dbus.md): renaming one breaks them.

use crate::capacity::{self, Share};
use crate::model::{from_micros, micros, Override};
use crate::plugin::CheckStyle;
use crate::probe_stats::Prober;
use crate::view::{count, ServiceView, Snapshot};
use serde::Serialize;
use std::fmt::Write as _;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub port: u16,
    pub agent_port: Option<u16>,
    pub pausable: bool,
    pub enabled: bool,
    pub paused: bool,
    /// up, warning, down, disabled, paused, starting (as the D-Bus `State`).
    pub state: String,
    /// Why the state is what it is, as in the probe's reason phrase.
    pub state_reason: String,
    pub http_status: u16,
    pub checks_enabled: bool,
    pub check_command: Option<String>,
    /// plain or nagios: how the exit code is read.
    pub check_style: String,
    /// The check's own words: first line of its output up to `|`, cleaned (may be empty).
    pub summary: String,
    /// µs since the epoch since the service is held out for flapping; 0 = not flapping.
    pub flapping_since: u64,
    pub last_exit_status: Option<i32>,
    pub last_result: Option<String>,
    /// µs since the epoch; 0 = never.
    pub last_check_time: u64,
    pub last_check_duration_us: u64,
    pub checks_count: u64,
    /// The operator's reason: the disable's, else the pause's.
    pub reason: String,
    pub disabled_by: String,
    pub disabled_since: u64,
    /// µs since the epoch; 0 = until enabled.
    pub disabled_until: u64,
    pub paused_by: String,
    pub paused_until: u64,
    pub output: String,
    /// µs since the epoch of the last answered probe; 0 = never.
    pub last_probe_time: u64,
    pub probes_count: u64,
    /// Silence alarm: µs of the last probe when no probe came for too long; 0 = not silent.
    pub silent_since: u64,
    /// Who probed lately, most recent first (at most 64), with HAProxy's view when sent.
    pub probers: Vec<Prober>,
    /// `off` or a percentage: the capacity guard of disable and pause.
    pub min_capacity: String,
    /// What each HAProxy that sent send-state in the last minute counts of this server and
    /// its backend; None: capacity unknown (no guard).
    pub capacity: Option<Vec<Share>>,
    /// The configuration files the service comes from: the main file and/or drop-in
    /// fragments, in the order they apply.
    pub config_files: Vec<String>,
    /// The service's own `control_group`s: their members may change this service (besides
    /// root, the daemon's user, `[general] control_group` and whom polkit allows).
    pub control_group: Vec<String>,
    /// The application's systemd unit (`unit=`); "" when none is followed.
    pub unit: String,
    /// Its ActiveState as systemd last reported it ("active", "failed"...); "stopping" after
    /// `unit_stopping`; "unknown" while systemd has not said (no system bus); "" without unit.
    pub unit_state: String,
}

impl ServiceStatus {
    pub fn from_view(v: &ServiceView) -> ServiceStatus {
        let probers = v.probes.probers();
        let d = v.admin.disabled.as_ref();
        let p = v.admin.paused.as_ref();
        ServiceStatus {
            name: v.cfg.name.clone(),
            port: v.cfg.port,
            agent_port: v.cfg.agent_port,
            pausable: v.cfg.pausable,
            enabled: d.is_none(),
            paused: p.is_some(),
            state: v.state.as_str().into(),
            state_reason: v.reason.clone(),
            http_status: v.http_status,
            checks_enabled: !v.admin.checks_stopped,
            check_command: v.cfg.check.as_ref().map(|a| {
                shlex::try_join(a.iter().map(String::as_str)).unwrap_or_else(|_| a.join(" "))
            }),
            check_style: v.cfg.check_style.as_str().into(),
            summary: v.summary.clone(),
            flapping_since: v.flapping_since.unwrap_or(0),
            last_exit_status: v.last.as_ref().map(|r| r.exit.status_code()),
            last_result: v.last.as_ref().map(|r| r.exit.to_string()),
            last_check_time: v.last.as_ref().map_or(0, |r| r.time),
            last_check_duration_us: v.last.as_ref().map_or(0, |r| r.duration_us),
            checks_count: v.checks_count,
            reason: d.or(p).map_or(String::new(), |o| o.reason.clone()),
            disabled_by: d.map_or(String::new(), |o| o.by.clone()),
            disabled_since: d.map_or(0, |o| o.since),
            disabled_until: d.map_or(0, |o| o.until),
            paused_by: p.map_or(String::new(), |o| o.by.clone()),
            paused_until: p.map_or(0, |o| o.until),
            output: v.last.as_ref().map_or(String::new(), |r| r.output.clone()),
            last_probe_time: v.probes.last_probe(),
            probes_count: v.probes.probes_total(),
            silent_since: v.silent_since.unwrap_or(0),
            min_capacity: v.cfg.min_capacity.to_string(),
            capacity: capacity::shares(&probers, recent_since()),
            probers,
            config_files: v
                .cfg
                .origin
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect(),
            control_group: v.cfg.control_groups.clone(),
            unit: v.cfg.unit.clone().unwrap_or_default(),
            unit_state: unit_state(v),
        }
    }
}

/// µs since the epoch a minute ago: probers seen since then count ([`crate::wait::RECENT`]).
fn recent_since() -> u64 {
    micros(std::time::SystemTime::now()).saturating_sub(crate::wait::RECENT.as_micros() as u64)
}

/// `unit_state` of status, D-Bus and metrics.
pub fn unit_state(v: &ServiceView) -> String {
    match (&v.cfg.unit, &v.unit.active) {
        (None, _) => String::new(),
        _ if v.unit.stopping => "stopping".into(),
        (Some(_), None) => "unknown".into(),
        (Some(_), Some(a)) => a.clone(),
    }
}

#[derive(Serialize)]
struct DaemonStatus<'a> {
    pid: u32,
    version: &'a str,
    started: u64,
    config_file: String,
    config_fragments: Vec<String>,
    summary: String,
    /// False while the state file cannot be written (`save_error` says why).
    state_saved: bool,
    save_error: String,
    services: Records<'a>,
}

/// The services' records, each made as it is written: ten thousand of them are ten megabytes,
/// never all held at once.
struct Records<'a>(Vec<&'a ServiceView>);

impl Serialize for Records<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|v| ServiceStatus::from_view(v)))
    }
}

/// The services `status` shows: all, or the one named (None if unknown).
fn select<'a>(snap: &'a Snapshot, service: Option<&str>) -> Option<Vec<&'a ServiceView>> {
    match service {
        None => Some(snap.services.values().map(|v| &**v).collect()),
        Some(n) => snap.services.get(n).map(|v| vec![&**v]),
    }
}

pub fn json(snap: &Snapshot, service: Option<&str>) -> Option<String> {
    let mut out = Vec::new();
    write_json(&mut out, snap, service)?.expect("writing to memory");
    Some(String::from_utf8(out).expect("JSON is UTF-8"))
}

/// `status --json` written to `w` (a buffer: serde writes a few bytes at a time) as it is
/// made (the control socket sends it in chunks):
/// None if the service named is unknown; an error from `w` ends the writing.
pub fn write_json(
    w: impl std::io::Write,
    snap: &Snapshot,
    service: Option<&str>,
) -> Option<std::io::Result<()>> {
    let d = DaemonStatus {
        pid: snap.pid,
        version: VERSION,
        started: snap.started,
        config_file: snap.config_file.display().to_string(),
        config_fragments: snap
            .config_fragments
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        summary: snap.summary(),
        state_saved: snap.unsaved.is_none(),
        save_error: snap.unsaved.as_ref().map_or(String::new(), unsaved_text),
        services: Records(select(snap, service)?),
    };
    let mut w = w;
    let mut ser = serde_json::Serializer::with_formatter(&mut w, Pretty::default());
    let res = d
        .serialize(&mut ser)
        .map_err(std::io::Error::from)
        .and_then(|()| w.write_all(b"\n"));
    Some(res)
}

/// serde_json's pretty format (two spaces), byte for byte, with each line break and its
/// indentation written at once: written piece by piece they were a third of the time of
/// `status --json` for ten thousand services.
#[derive(Default)]
struct Pretty {
    level: usize,
    has_value: bool,
}

/// ",\n" and the indentation of the deepest level written at once; deeper ones (none in
/// status) are written in pieces.
const BREAK: &[u8] = b",\n                                                                ";

impl Pretty {
    /// `[` or `{`: one level deeper, nothing in it yet.
    fn open<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    /// `]` or `}`: on a line of its own unless empty (`[]`, `{}`).
    fn close<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level -= 1;
        if self.has_value {
            self.line(w, false)?;
        }
        w.write_all(bracket)
    }

    fn line<W: ?Sized + std::io::Write>(&self, w: &mut W, comma: bool) -> std::io::Result<()> {
        let from = if comma { 0 } else { 1 };
        let to = 2 + 2 * self.level;
        if to <= BREAK.len() {
            return w.write_all(&BREAK[from..to]);
        }
        w.write_all(&BREAK[from..2])?;
        for _ in 0..self.level {
            w.write_all(b"  ")?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for Pretty {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.line(w, !first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.line(w, !first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// "cannot write /var/lib/psentinel/state.json since T: No space left on device".
pub fn unsaved_text(f: &crate::view::SaveFailure) -> String {
    format!(
        "cannot write {} since {}: {}",
        f.path.display(),
        time(f.since),
        f.error
    )
}

pub fn time(us: u64) -> String {
    humantime::format_rfc3339_seconds(from_micros(us)).to_string()
}

/// "by alice since T until U: deploy v2": an operator's decision in one line.
pub fn override_text(o: &Override) -> String {
    let mut s = format!("by {} since {}", o.by, time(o.since));
    if o.until != 0 {
        let _ = write!(s, " until {}", time(o.until));
    }
    if !o.reason.is_empty() {
        let _ = write!(s, ": {}", o.reason);
    }
    s
}

fn manual(o: Option<&Override>) -> String {
    o.map_or("no".into(), |o| format!("yes, {}", override_text(o)))
}

pub fn text(snap: &Snapshot, service: Option<&str>) -> Option<String> {
    let views = select(snap, service)?;
    let fragments = match snap.config_fragments.len() {
        0 => String::new(),
        n => format!(" and {}", count(n as u64, "drop-in fragment")),
    };
    let mut out = format!(
        "psentinel {VERSION}, pid {}, running since {}, config {}{fragments}\n{}\n",
        snap.pid,
        time(snap.started),
        snap.config_file.display(),
        snap.summary()
    );
    if let Some(f) = &snap.unsaved {
        let _ = writeln!(
            out,
            "STATE NOT SAVED: {}; retrying; a restart now would forget the latest changes",
            unsaved_text(f)
        );
    }
    for v in views {
        let s = ServiceStatus::from_view(v);
        let _ = writeln!(
            out,
            "\n[{}] port {}{}, pausable {}",
            s.name,
            s.port,
            s.agent_port
                .map_or(String::new(), |p| format!(", agent port {p}")),
            if s.pausable { "yes" } else { "no" }
        );
        // Where each service comes from matters once there is more than one file.
        if !snap.config_fragments.is_empty() {
            let _ = writeln!(out, "  from:        {}", s.config_files.join(", "));
        }
        let _ = writeln!(
            out,
            "  state:       {} (HTTP {}) {}",
            s.state, s.http_status, s.state_reason
        );
        if !s.unit.is_empty() {
            let sub = if v.unit.sub.is_empty() || s.unit_state == "unknown" {
                String::new()
            } else {
                format!(" ({})", v.unit.sub)
            };
            let _ = writeln!(out, "  unit:        {} {}{sub}", s.unit, s.unit_state);
        }
        let _ = writeln!(out, "  disabled:    {}", manual(v.admin.disabled.as_ref()));
        let _ = writeln!(out, "  paused:      {}", manual(v.admin.paused.as_ref()));
        if !s.control_group.is_empty() {
            let _ = writeln!(
                out,
                "  operators:   group {} (and those who may change every service)",
                s.control_group.join(", ")
            );
        }
        match &s.check_command {
            None => {
                let _ = writeln!(out, "  check:       none (counts as passing)");
            }
            Some(c) => {
                let _ = writeln!(
                    out,
                    "  check:       {c} every {}s, timeout {}s{}",
                    v.cfg.interval.as_secs_f64(),
                    v.cfg.timeout.as_secs_f64(),
                    if s.checks_enabled {
                        ""
                    } else {
                        " [stopped by disable_test]"
                    }
                );
                let health = match v.health.healthy {
                    None => "unknown",
                    Some(true) => "passing",
                    Some(false) => "failing",
                };
                let health = match v.health.healthy {
                    Some(true) if v.health.warning => "passing with a warning",
                    _ => health,
                };
                // A plain script's first line is in `output:` below; a plugin's summary is
                // its verdict, worth a line of its own.
                let nagios = v.cfg.check_style == CheckStyle::Nagios;
                let _ = writeln!(
                    out,
                    "  health:      {health} (rise {}, fall {}{})",
                    v.cfg.rise,
                    v.cfg.fall,
                    if nagios { ", check_style nagios" } else { "" }
                );
                if nagios && !s.summary.is_empty() {
                    let _ = writeln!(out, "  summary:     {}", s.summary);
                }
                if let Some(since) = v.flapping_since {
                    let _ = writeln!(
                        out,
                        "  flapping:    yes, held out since {}: health changed more than {} times within {}s; until stable for {}s",
                        time(since),
                        v.cfg.flap.max_changes,
                        v.cfg.flap.window.as_secs_f64(),
                        v.cfg.flap.hold.as_secs_f64()
                    );
                }
            }
        }
        if s.last_probe_time == 0 {
            let _ = writeln!(out, "  probes:      none yet");
        } else {
            let _ = writeln!(
                out,
                "  probes:      {} answered, last at {}{}",
                s.probes_count,
                time(s.last_probe_time),
                if s.silent_since != 0 {
                    " [SILENT: no probe for longer than usual; is HAProxy still checking?]"
                } else {
                    ""
                }
            );
        }
        for p in &s.probers {
            let _ = write!(
                out,
                "  prober:      {} {}, {}, last {}",
                p.address,
                p.kind,
                count(p.count, "probe"),
                time(p.last_seen)
            );
            if let Some(h) = &p.haproxy {
                let _ = write!(out, "; HAProxy {} {}: {}", h.node, h.name, h.state);
                if let Some(n) = h.scur {
                    let _ = write!(out, ", {} session(s)", n);
                }
            }
            out.push('\n');
        }
        match &s.capacity {
            None => {
                let _ = writeln!(
                    out,
                    "  capacity:    unknown (no HAProxy with http-check send-state in the last minute: no guard)"
                );
            }
            Some(shares) => {
                for c in shares {
                    let _ = writeln!(
                        out,
                        "  capacity:    HAProxy {} ({}) backend {}: this server {} of {} usable weight; min_capacity {}",
                        c.node, c.address, c.backend, c.weight, c.total, s.min_capacity
                    );
                }
            }
        }
        match &v.last {
            None => {
                let _ = writeln!(out, "  last check:  none yet");
            }
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  last check:  {} at {}, took {} ms; {} since start",
                    r.exit.describe(),
                    time(r.time),
                    r.duration_us / 1000,
                    count(s.checks_count, "check")
                );
                let output = r.output.trim_end();
                if !output.is_empty() {
                    let _ = writeln!(
                        out,
                        "  output:      {}",
                        output.replace('\n', "\n               ")
                    );
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `status --json` keeps serde_json's pretty format byte for byte, also past the depth
    /// whose indentation is written at once.
    #[test]
    fn pretty_is_serde_jsons_pretty() {
        let mut deep = serde_json::json!({"end": [1, {}], "empty": []});
        for i in 0..40 {
            deep = serde_json::json!({ format!("k{i}"): [deep, null, "a\"b\n"], "n": i });
        }
        let v = serde_json::json!({"a": [], "b": {}, "c": [1, [2, [3]], {"d": "e"}], "deep": deep});
        let mut ours = Vec::new();
        v.serialize(&mut serde_json::Serializer::with_formatter(
            &mut ours,
            Pretty::default(),
        ))
        .unwrap();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string_pretty(&v).unwrap()
        );
    }
}
