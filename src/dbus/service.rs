//! One object per configured service: `org.psentinel.PSentinel1.Service`.
//!
//! Properties are read from the engine's latest snapshot on every Get, so they can never
//! disagree with the probe answer. Their change signals are not emitted here but by the
//! bridge in `super`, which diffs snapshots: a change made by a check, the control socket,
//! another D-Bus client or an expiry is signalled the same way.

use super::error::Result;
use super::Ctx;
use crate::auth::Request;
use crate::engine::{CheckRun, EngineError, Outcome};
use crate::model::{Override, Refusal};
use crate::status::{override_text, ServiceStatus};
use crate::view::ServiceView;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use zbus::message::Header;
use zbus::zvariant::Value;
use zbus::{interface, Connection};

/// Longer than any maintenance window, and far from overflowing µs timestamps.
const MAX_EXPIRE_AFTER_S: u64 = 100 * 365 * 24 * 3600;

/// The D-Bus properties of a service, as one comparable record.
#[derive(Debug, Clone, PartialEq)]
pub struct Props {
    pub name: String,
    pub port: u16,
    pub pausable: bool,
    pub enabled: bool,
    pub paused: bool,
    pub state: String,
    pub last_exit_status: i32,
    pub last_check_time: u64,
    pub checks_count: u64,
    pub reason: String,
    pub disabled_by: String,
    pub disabled_until: u64,
    pub summary: String,
    pub flapping: bool,
    pub unit: String,
    pub unit_state: String,
}

impl Props {
    pub fn from_view(v: &ServiceView) -> Props {
        let s = ServiceStatus::from_view(v);
        Props {
            name: s.name,
            port: s.port,
            pausable: s.pausable,
            enabled: s.enabled,
            paused: s.paused,
            state: s.state,
            last_exit_status: s.last_exit_status.unwrap_or(-1),
            last_check_time: s.last_check_time,
            checks_count: s.checks_count,
            reason: s.reason,
            disabled_by: s.disabled_by,
            disabled_until: s.disabled_until,
            summary: s.summary,
            flapping: s.flapping_since != 0,
            unit: s.unit,
            unit_state: s.unit_state,
        }
    }

    /// Every property under its D-Bus name.
    pub fn values(&self) -> [(&'static str, Value<'static>); 16] {
        [
            ("Name", self.name.clone().into()),
            ("Port", self.port.into()),
            ("Pausable", self.pausable.into()),
            ("Enabled", self.enabled.into()),
            ("Paused", self.paused.into()),
            ("State", self.state.clone().into()),
            ("LastExitStatus", self.last_exit_status.into()),
            ("LastCheckTime", self.last_check_time.into()),
            ("ChecksCount", self.checks_count.into()),
            ("Reason", self.reason.clone().into()),
            ("DisabledBy", self.disabled_by.clone().into()),
            ("DisabledUntil", self.disabled_until.into()),
            ("Summary", self.summary.clone().into()),
            ("Flapping", self.flapping.into()),
            ("Unit", self.unit.clone().into()),
            ("UnitState", self.unit_state.clone().into()),
        ]
    }

    /// The properties whose value differs from `old`, with their new values.
    pub fn changed_since(&self, old: &Props) -> HashMap<&'static str, Value<'static>> {
        self.values()
            .into_iter()
            .zip(old.values())
            .filter(|(new, old)| new.1 != old.1)
            .map(|(new, _)| new)
            .collect()
    }
}

/// `Status()`: the whole flat record of `status --json` (same keys), typed for D-Bus.
/// Absent values are spelled as on the properties: -1 exit status, 0 times, empty strings.
pub fn status_dict(v: &ServiceView) -> HashMap<String, Value<'static>> {
    let s = ServiceStatus::from_view(v);
    let mut d: HashMap<String, Value<'static>> = HashMap::new();
    let mut put = |k: &str, v: Value<'static>| {
        d.insert(k.to_string(), v);
    };
    put("name", s.name.into());
    put("port", s.port.into());
    put("agent_port", s.agent_port.unwrap_or(0).into());
    put("pausable", s.pausable.into());
    put("enabled", s.enabled.into());
    put("paused", s.paused.into());
    put("state", s.state.into());
    put("state_reason", s.state_reason.into());
    put("http_status", s.http_status.into());
    put("checks_enabled", s.checks_enabled.into());
    put("check_command", s.check_command.unwrap_or_default().into());
    put("check_style", s.check_style.into());
    put("summary", s.summary.into());
    put("flapping_since", s.flapping_since.into());
    put("last_exit_status", s.last_exit_status.unwrap_or(-1).into());
    put("last_result", s.last_result.unwrap_or_default().into());
    put("last_check_time", s.last_check_time.into());
    put("last_check_duration_us", s.last_check_duration_us.into());
    put("checks_count", s.checks_count.into());
    put("reason", s.reason.into());
    put("disabled_by", s.disabled_by.into());
    put("disabled_since", s.disabled_since.into());
    put("disabled_until", s.disabled_until.into());
    put("paused_by", s.paused_by.into());
    put("paused_until", s.paused_until.into());
    put("output", s.output.into());
    put("last_probe_time", s.last_probe_time.into());
    put("probes_count", s.probes_count.into());
    put("silent_since", s.silent_since.into());
    put("config_files", s.config_files.into());
    put("unit", s.unit.into());
    put("unit_state", s.unit_state.into());
    // aa{sv} with the keys of `status --json`'s entries; D-Bus has no null, so an absent
    // HAProxy view (no send-state) is an empty a{sv} where JSON has null.
    let probers: Vec<HashMap<String, Value<'static>>> = s
        .probers
        .iter()
        .map(|p| {
            let haproxy: HashMap<String, Value<'static>> = p
                .haproxy
                .as_ref()
                .map(|h| {
                    // Absent numbers (an older HAProxy) are -1.
                    let num = |n: Option<u32>| Value::from(n.map_or(-1, i64::from));
                    HashMap::from([
                        ("state".to_string(), Value::from(h.state.clone())),
                        ("name".to_string(), Value::from(h.name.clone())),
                        ("node".to_string(), Value::from(h.node.clone())),
                        ("weight".to_string(), num(h.weight)),
                        ("total_weight".to_string(), num(h.total_weight)),
                        ("scur".to_string(), num(h.scur)),
                    ])
                })
                .unwrap_or_default();
            HashMap::from([
                ("address".to_string(), Value::from(p.address.to_string())),
                ("kind".to_string(), Value::from(p.kind.to_string())),
                ("count".to_string(), Value::from(p.count)),
                ("last_seen".to_string(), Value::from(p.last_seen)),
                ("haproxy".to_string(), Value::from(haproxy)),
            ])
        })
        .collect();
    put("probers", Value::from(probers));
    put("min_capacity", s.min_capacity.into());
    // Unknown capacity (null in JSON) is an empty aa{sv}.
    let capacity: Vec<HashMap<String, Value<'static>>> = s
        .capacity
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            HashMap::from([
                ("node".to_string(), Value::from(c.node)),
                ("address".to_string(), Value::from(c.address.to_string())),
                ("backend".to_string(), Value::from(c.backend)),
                ("weight".to_string(), Value::from(c.weight)),
                ("total".to_string(), Value::from(c.total)),
            ])
        })
        .collect();
    put("capacity", Value::from(capacity));
    put("control_group", Value::from(s.control_group));
    d
}

/// The `options` of DisableWithOptions, PauseWithOptions, PauseAllWithOptions: `force` (b).
pub(super) fn force_option(options: &HashMap<String, zbus::zvariant::OwnedValue>) -> Result<bool> {
    let mut force = false;
    for (k, v) in options {
        match k.as_str() {
            "force" => {
                force = bool::try_from(v).map_err(|_| {
                    zbus::fdo::Error::InvalidArgs("option 'force' must be a boolean (b)".into())
                })?
            }
            other => {
                let hint = crate::config::closest(other, &["force"])
                    .map(|k| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                return Err(zbus::fdo::Error::InvalidArgs(format!(
                    "unknown option '{other}'{hint}; known: force (b)"
                ))
                .into());
            }
        }
    }
    Ok(force)
}

/// The `replaced` answer of Disable and Pause: D-Bus has one string for it.
fn replaced(done: &Outcome) -> String {
    let before: Option<&Override> = match done {
        Outcome::Disabled { replaced, .. } => replaced.as_ref(),
        Outcome::Paused { replaced, .. } => replaced.first().map(|(_, o)| o),
        _ => None,
    };
    before.map_or(String::new(), override_text)
}

pub struct ServiceObject {
    pub(super) name: String,
    pub(super) ctx: Arc<Ctx>,
}

impl ServiceObject {
    fn view(&self) -> zbus::fdo::Result<Arc<ServiceView>> {
        self.ctx
            .handle
            .snapshot()
            .services
            .get(&self.name)
            .cloned()
            .ok_or_else(|| {
                // Only between a reload and the bridge removing this object.
                zbus::fdo::Error::UnknownObject(format!(
                    "service '{}' was removed from the configuration",
                    self.name
                ))
            })
    }

    fn request(&self, verb: &'static str) -> Request {
        Request::service(&self.name, verb)
    }

    fn props(&self) -> zbus::fdo::Result<Props> {
        Ok(Props::from_view(&*self.view()?))
    }

    /// Disable and DisableWithOptions, once authorised: they differ only in `force`.
    async fn disable_as(
        &self,
        actor: &str,
        reason: &str,
        expire_after_s: u64,
        force: bool,
    ) -> Result<String> {
        if expire_after_s > MAX_EXPIRE_AFTER_S {
            return Err(zbus::fdo::Error::InvalidArgs(format!(
                "expire_after_s {expire_after_s} is more than 100 years; use 0 for \"until enabled\""
            ))
            .into());
        }
        let for_ = (expire_after_s > 0).then(|| Duration::from_secs(expire_after_s));
        let done = self
            .ctx
            .handle
            .disable_with(&self.name, reason, for_, force, actor)
            .await?;
        Ok(replaced(&done))
    }

    /// Pause and PauseWithOptions, once authorised: they differ only in `force`.
    async fn pause_as(&self, actor: &str, force: bool) -> Result<String> {
        let done = self
            .ctx
            .handle
            .pause_with(Some(&self.name), "", None, force, actor)
            .await?;
        Ok(replaced(&done))
    }

    /// WaitForHAProxy and WaitUntilDrained: what to wait for differs, the reply does not.
    async fn wait_for(
        &self,
        timeout_s: u64,
        want: impl FnOnce(&crate::view::Snapshot) -> crate::wait::Want,
    ) -> Result<(bool, String)> {
        let snap = self.ctx.handle.snapshot();
        if !snap.services.contains_key(&self.name) {
            let gone = Refusal::UnknownService(self.name.clone());
            return Err(EngineError::from(gone).into());
        }
        let targets = match want(&snap).targets(&snap) {
            Ok(t) => t,
            Err(why) => return Ok((false, why.to_string())),
        };
        let timeout = match timeout_s {
            0 => crate::wait::DEFAULT_TIMEOUT,
            s => std::time::Duration::from_secs(s.min(3600)),
        };
        // Progress lines are for the Unix socket's streamed answer; D-Bus has one reply.
        let (progress, _ignored) = tokio::sync::mpsc::unbounded_channel();
        Ok(match crate::wait::wait(targets, timeout, progress).await {
            Ok(caught) => {
                let lines: Vec<String> = caught.iter().map(ToString::to_string).collect();
                (true, lines.join("\n"))
            }
            Err(why) => (false, why.to_string()),
        })
    }
}

#[interface(name = "org.psentinel.PSentinel1.Service")]
impl ServiceObject {
    /// Lifts a manual disable (HAProxy sees the check-derived state again).
    async fn enable(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        let actor = self
            .ctx
            .authorise(conn, &hdr, "Enable", self.request("enable"))
            .await?;
        self.ctx.handle.enable(&self.name, &actor).await?;
        Ok(())
    }

    /// Takes the service out (503 or disabled_status); expire_after_s 0 = until Enable.
    /// `replaced`: the disable this one took the place of ("by alice since ...: reason"),
    /// empty when the service was not disabled.
    #[zbus(out_args("replaced"))]
    async fn disable(
        &self,
        reason: &str,
        expire_after_s: u64,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        let actor = self
            .ctx
            .authorise(conn, &hdr, "Disable", self.request("disable"))
            .await?;
        self.disable_as(&actor, reason, expire_after_s, false).await
    }

    /// Disable with options: `force` (b) takes the service out even when the capacity guard
    /// refuses (the error `CapacityGuard`); the journal records it. Unknown options are
    /// refused (InvalidArgs), so a misspelt `force` never passes silently.
    #[zbus(out_args("replaced"))]
    async fn disable_with_options(
        &self,
        reason: &str,
        expire_after_s: u64,
        options: HashMap<String, zbus::zvariant::OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        let actor = self
            .ctx
            .authorise(conn, &hdr, "Disable", self.request("disable"))
            .await?;
        let force = force_option(&options)?;
        self.disable_as(&actor, reason, expire_after_s, force).await
    }

    /// Pause with options, as DisableWithOptions (`force`).
    #[zbus(out_args("replaced"))]
    async fn pause_with_options(
        &self,
        options: HashMap<String, zbus::zvariant::OwnedValue>,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        let actor = self
            .ctx
            .authorise(conn, &hdr, "Pause", self.request("pause"))
            .await?;
        let force = force_option(&options)?;
        self.pause_as(&actor, force).await
    }

    /// Pauses a pausable service (NotPausable otherwise). `replaced`: the pause this one took
    /// the place of, empty when the service was not paused.
    #[zbus(out_args("replaced"))]
    async fn pause(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<String> {
        let actor = self
            .ctx
            .authorise(conn, &hdr, "Pause", self.request("pause"))
            .await?;
        self.pause_as(&actor, false).await
    }

    async fn resume(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<()> {
        let actor = self
            .ctx
            .authorise(conn, &hdr, "Resume", self.request("run"))
            .await?;
        self.ctx.handle.resume(Some(&self.name), &actor).await?;
        Ok(())
    }

    /// Everything `status --json` says about this service, same keys.
    #[zbus(out_args("status"))]
    async fn status(&self) -> zbus::fdo::Result<HashMap<String, Value<'static>>> {
        Ok(status_dict(&*self.view()?))
    }

    /// The D-Bus form of `psentinel -c ... --wait`: returns once every HAProxy that probed
    /// in the last minute has acted on the current state (taken out, or put back when up),
    /// or when `timeout_s` (0 = 60 s) ran out. Call it after Disable, Pause, Enable, Resume.
    #[zbus(name = "WaitForHAProxy", out_args("caught_up", "message"))]
    async fn wait_for_haproxy(
        &self,
        timeout_s: u64,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(bool, String)> {
        self.ctx
            .authorise(conn, &hdr, "WaitForHAProxy", self.request("wait"))
            .await?;
        self.wait_for(timeout_s, |snap| {
            crate::wait::Want::current(&self.name, snap)
        })
        .await
    }

    /// The D-Bus form of `disable --wait=drained`: returns once every HAProxy that probed in
    /// the last minute has taken the service out and, when it sends send-state, holds no
    /// session on it (`scur=0`), or when `timeout_s` (0 = 60 s) ran out; the message then
    /// names who still holds how many sessions. Call it after Disable or Pause.
    #[zbus(out_args("drained", "message"))]
    async fn wait_until_drained(
        &self,
        timeout_s: u64,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(bool, String)> {
        self.ctx
            .authorise(conn, &hdr, "WaitUntilDrained", self.request("wait"))
            .await?;
        self.wait_for(timeout_s, |_| crate::wait::Want::drained(&self.name))
            .await
    }

    /// Runs the check now (after a run in progress) and returns how it ended. Runs a program
    /// on the host, so it is authorised like a change.
    #[zbus(out_args("exit_status", "output"))]
    async fn run_check(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> Result<(i32, String)> {
        self.ctx
            .authorise(conn, &hdr, "RunCheck", self.request("test"))
            .await?;
        Ok(match self.ctx.handle.run_check(&self.name).await? {
            CheckRun::Ran(r) => (r.exit.status_code(), r.output),
            CheckRun::NoCheck => (0, crate::control::words::NO_CHECK.into()),
        })
    }

    #[zbus(property)]
    async fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property)]
    async fn port(&self) -> zbus::fdo::Result<u16> {
        Ok(self.props()?.port)
    }

    #[zbus(property)]
    async fn pausable(&self) -> zbus::fdo::Result<bool> {
        Ok(self.props()?.pausable)
    }

    #[zbus(property)]
    async fn enabled(&self) -> zbus::fdo::Result<bool> {
        Ok(self.props()?.enabled)
    }

    #[zbus(property)]
    async fn paused(&self) -> zbus::fdo::Result<bool> {
        Ok(self.props()?.paused)
    }

    /// up, warning, down, disabled, paused, starting.
    #[zbus(property)]
    async fn state(&self) -> zbus::fdo::Result<String> {
        Ok(self.props()?.state)
    }

    /// -1 until the first check ended; 128+N for signal N, 124 timeout, 127 cannot start.
    #[zbus(property)]
    async fn last_exit_status(&self) -> zbus::fdo::Result<i32> {
        Ok(self.props()?.last_exit_status)
    }

    /// µs since the epoch; 0 = never.
    #[zbus(property)]
    async fn last_check_time(&self) -> zbus::fdo::Result<u64> {
        Ok(self.props()?.last_check_time)
    }

    #[zbus(property)]
    async fn checks_count(&self) -> zbus::fdo::Result<u64> {
        Ok(self.props()?.checks_count)
    }

    #[zbus(property)]
    async fn reason(&self) -> zbus::fdo::Result<String> {
        Ok(self.props()?.reason)
    }

    /// The application's systemd unit (`unit=`); "" when none is followed.
    #[zbus(property)]
    async fn unit(&self) -> zbus::fdo::Result<String> {
        Ok(self.props()?.unit)
    }

    /// The unit's ActiveState as systemd reports it; "stopping" after unit_stopping,
    /// "unknown" without a system bus, "" without a unit.
    #[zbus(property)]
    async fn unit_state(&self) -> zbus::fdo::Result<String> {
        Ok(self.props()?.unit_state)
    }

    #[zbus(property)]
    async fn disabled_by(&self) -> zbus::fdo::Result<String> {
        Ok(self.props()?.disabled_by)
    }

    /// µs since the epoch; 0 = not disabled, or until enabled.
    #[zbus(property)]
    async fn disabled_until(&self) -> zbus::fdo::Result<u64> {
        Ok(self.props()?.disabled_until)
    }

    /// The check's own words: the first line of its output up to '|', cleaned.
    #[zbus(property)]
    async fn summary(&self) -> zbus::fdo::Result<String> {
        Ok(self.props()?.summary)
    }

    /// True while the service is held out for flapping (flap_max_changes).
    #[zbus(property)]
    async fn flapping(&self) -> zbus::fdo::Result<bool> {
        Ok(self.props()?.flapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> Props {
        Props {
            name: "web".into(),
            port: 8080,
            pausable: false,
            enabled: true,
            paused: false,
            state: "up".into(),
            last_exit_status: 0,
            last_check_time: 1,
            checks_count: 1,
            reason: String::new(),
            disabled_by: String::new(),
            disabled_until: 0,
            summary: String::new(),
            flapping: false,
            unit: String::new(),
            unit_state: String::new(),
        }
    }

    #[test]
    fn only_changed_properties_are_announced() {
        let old = props();
        assert!(old.changed_since(&old).is_empty());
        let mut new = old.clone();
        new.enabled = false;
        new.state = "disabled".into();
        new.disabled_by = "root".into();
        let c = new.changed_since(&old);
        let mut keys: Vec<&str> = c.keys().copied().collect();
        keys.sort();
        assert_eq!(keys, ["DisabledBy", "Enabled", "State"]);
        assert_eq!(c["State"], Value::from("disabled"));
        assert_eq!(c["Enabled"], Value::from(false));
    }
}
