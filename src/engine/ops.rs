//! Operator commands: enable, disable, pause, resume, stopping checks, reload. Each answers a
//! typed [`Outcome`] and leaves one audit line in the journal: who, what, why, until when,
//! and what it replaced.

use super::handle::Op;
use super::outcome::{EngineError, Outcome, ReloadRefused, Reloaded};
use super::Engine;
use crate::capacity::{self, Leaving, MinCapacity, Remaining};
use crate::check::RunnerCmd;
use crate::config::Config;
use crate::model::State;
use crate::model::{from_micros, Micros, Override, Refusal};
use crate::probe_stats::Prober;
use crate::systemd;

impl Engine {
    pub(super) fn op(&mut self, op: Op, actor: &str) -> Result<Outcome, EngineError> {
        let now = self.clock.now();
        let outcome = match op {
            Op::Ping => return Ok(Outcome::Pong),
            Op::Reload => return self.reload_file(actor).map(Outcome::Reloaded),
            Op::Enable(name) => {
                let svc = self.svc_mut(&name)?;
                let was_disabled = svc.facts.admin.enable();
                svc.refresh_view();
                audit(&name, actor, "enable", None, None);
                Outcome::Enabled {
                    service: name,
                    was_disabled,
                }
            }
            Op::Disable(name, reason, for_, force) => {
                self.svc_mut(&name)?;
                let forced = self.capacity_guard(std::slice::from_ref(&name), force)?;
                let svc = self.svc_mut(&name)?;
                let ovr = Override::new(&reason, actor, now, for_);
                let replaced = svc.facts.admin.disable(ovr.clone());
                svc.refresh_view();
                audit(&name, actor, "disable", Some(&ovr), replaced.as_ref());
                audit_force(&name, actor, force, &forced);
                Outcome::Disabled {
                    service: name,
                    until: until(&ovr),
                    replaced,
                    forced,
                }
            }
            Op::Pause(name, reason, for_, force) => {
                let targets = self.pausable_targets(name.as_deref())?;
                // All or nothing: the guard counts every service paused together.
                let forced = self.capacity_guard(&targets, force)?;
                let ovr = Override::new(&reason, actor, now, for_);
                let mut replaced = Vec::new();
                for n in &targets {
                    let svc = self.svc_mut(n)?;
                    let before = svc.facts.admin.pause(true, n, ovr.clone())?;
                    svc.refresh_view();
                    audit(n, actor, "pause", Some(&ovr), before.as_ref());
                    audit_force(n, actor, force, &forced);
                    replaced.extend(before.map(|b| (n.clone(), b)));
                }
                Outcome::Paused {
                    services: targets,
                    until: until(&ovr),
                    replaced,
                    forced,
                }
            }
            Op::Resume(name) => {
                let targets = self.pausable_targets(name.as_deref())?;
                for n in &targets {
                    let svc = self.svc_mut(n)?;
                    svc.facts.admin.resume(true, n)?;
                    svc.refresh_view();
                    audit(n, actor, "run", None, None);
                }
                Outcome::Resumed { services: targets }
            }
            Op::SetChecksStopped(name, stopped) => {
                let svc = self.svc_mut(&name)?;
                svc.facts.admin.checks_stopped = stopped;
                if let Some(r) = &svc.runner {
                    r.send(RunnerCmd::SetStopped(stopped));
                }
                svc.refresh_view();
                if stopped {
                    audit(&name, actor, "disable_test", None, None);
                    Outcome::ChecksStopped { service: name }
                } else {
                    audit(&name, actor, "enable_test", None, None);
                    Outcome::ChecksRestarted { service: name }
                }
            }
            Op::UnitStopping(unit) => {
                let services = self.set_unit_stopping(&unit, true, actor)?;
                Outcome::UnitStopping { unit, services }
            }
            Op::UnitStarted(unit) => {
                let services = self.set_unit_stopping(&unit, false, actor)?;
                Outcome::UnitStarted { unit, services }
            }
        };
        self.after_admin_change();
        match self.saver.failure() {
            None => Ok(outcome),
            Some(failure) => Err(EngineError::NotSaved {
                outcome: Box::new(outcome),
                failure: failure.clone(),
            }),
        }
    }

    /// Marks (or clears) an announced stop on every service that follows `unit`.
    fn set_unit_stopping(
        &mut self,
        unit: &str,
        stopping: bool,
        actor: &str,
    ) -> Result<Vec<String>, EngineError> {
        let mut names = Vec::new();
        for (name, svc) in self.services.iter_mut() {
            if svc.facts.cfg.unit.as_deref() != Some(unit) {
                continue;
            }
            let announced = svc.facts.unit.stopping;
            svc.facts.unit.stopping = stopping;
            svc.refresh_view();
            let what = if stopping {
                "unit_stopping"
            } else {
                "unit_started"
            };
            audit(name, actor, what, None, None);
            if !stopping && !svc.facts.unit.out() {
                if announced {
                    // The stop announced was never seen on the bus (no bus, or systemd's
                    // signals coalesced): this is the word that the application has started
                    // again. (When it was seen, the unit's return did this already.)
                    svc.app_started();
                } else {
                    // Started, says its unit's ExecStartPost: check now and until it passes
                    // (already under way when the bus showed the start), keeping what the
                    // check said so far. `unit_started --wait` waits for this.
                    svc.recheck_soon();
                }
            }
            names.push(name.clone());
        }
        if names.is_empty() {
            return Err(Refusal::UnknownUnit(unit.into()).into());
        }
        Ok(names)
    }

    /// Re-reads the configuration file and applies it; a bad file changes nothing.
    fn reload_file(&mut self, actor: &str) -> Result<Reloaded, EngineError> {
        systemd::notify_reloading();
        let res = Config::load(&self.cfg.file)
            .map_err(|e| ReloadRefused::Config(e.to_string()))
            .and_then(|new| {
                let pending = self.cfg.general.changed_keys(&new.general);
                let mut r = self.apply(new, None)?;
                r.pending_restart = pending;
                Ok(r)
            });
        systemd::notify_ready();
        match res {
            Ok(r) => {
                self.reloads += 1;
                self.publish();
                crate::last_good::remember(&self.cfg);
                self.notes.set(systemd::Note::LastGood, None);
                self.notes.set(systemd::Note::ReloadRefused, None);
                tracing::info!(
                    psentinel_actor = actor,
                    "configuration reloaded: {}",
                    r.summary()
                );
                for name in &r.check_changed {
                    tracing::info!(
                        psentinel_service = %name,
                        "{name}: check command changed; its earlier result is dropped"
                    );
                }
                if !r.pending_restart.is_empty() {
                    tracing::warn!(
                        "[general] changed in {}; takes effect at the next restart: {}",
                        self.cfg.file.display(),
                        r.pending_restart.join(", ")
                    );
                }
                Ok(r)
            }
            Err(e) => {
                tracing::error!(
                    psentinel_actor = actor,
                    "reload refused, keeping the running configuration: {e}"
                );
                let note = format!("reload refused: {e}");
                self.notes.set(systemd::Note::ReloadRefused, Some(note));
                Err(EngineError::Reload(e))
            }
        }
    }

    /// The capacity guard ([`crate::capacity`]) for taking `names` out: of them, only those
    /// that answer "up" now take capacity away. Ok: what `force` took them out past (empty
    /// when the guard had nothing against it).
    fn capacity_guard(&self, names: &[String], force: bool) -> Result<Vec<Remaining>, EngineError> {
        let since = self
            .clock
            .now()
            .saturating_sub(crate::wait::RECENT.as_micros() as u64);
        let tables: Vec<(&str, MinCapacity, Vec<Prober>)> = names
            .iter()
            .filter_map(|n| self.services.get(n))
            .filter(|s| s.view.state == State::Up)
            .map(|s| {
                let c = &s.facts.cfg;
                (c.name.as_str(), c.min_capacity, s.facts.probes.probers())
            })
            .collect();
        let leaving: Vec<Leaving> = tables
            .iter()
            .map(|(service, min, probers)| Leaving {
                service,
                min: *min,
                probers,
            })
            .collect();
        match capacity::guard(&leaving, since) {
            Ok(_) => Ok(Vec::new()),
            Err(short) if force => Ok(short.short),
            Err(short) => {
                tracing::warn!("{short}");
                Err(short.into())
            }
        }
    }

    /// Names of the services a pause/run acts on: the one named (which must be pausable), or
    /// every pausable one.
    fn pausable_targets(&self, name: Option<&str>) -> Result<Vec<String>, EngineError> {
        match name {
            Some(n) => {
                let svc = self
                    .services
                    .get(n)
                    .ok_or_else(|| Refusal::UnknownService(n.into()))?;
                if !svc.facts.cfg.pausable {
                    return Err(Refusal::NotPausable(n.into()).into());
                }
                Ok(vec![n.into()])
            }
            None => {
                let all: Vec<String> = self
                    .services
                    .values()
                    .filter(|s| s.facts.cfg.pausable)
                    .map(|s| s.facts.cfg.name.clone())
                    .collect();
                if all.is_empty() {
                    Err(EngineError::NothingPausable)
                } else {
                    Ok(all)
                }
            }
        }
    }
}

fn until(o: &Override) -> Option<Micros> {
    (o.until != 0).then_some(o.until)
}

fn time(us: Micros) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(from_micros(us))
}

/// " (why) until T" for the log.
fn described(o: &Override) -> String {
    let mut s = String::new();
    if !o.reason.is_empty() {
        s.push_str(&format!(" ({})", o.reason));
    }
    if o.until != 0 {
        s.push_str(&format!(" until {}", time(o.until)));
    }
    s
}

/// `--force`: a second journal line says what it overrode, so the trail shows who took a
/// backend below its capacity.
fn audit_force(service: &str, actor: &str, force: bool, forced: &[Remaining]) {
    if !force {
        return;
    }
    let what = if forced.is_empty() {
        "the capacity guard had nothing against it".to_string()
    } else {
        let v: Vec<String> = forced.iter().map(ToString::to_string).collect();
        format!("past the capacity guard: {}", v.join("; "))
    };
    tracing::warn!(
        psentinel_service = service,
        psentinel_actor = actor,
        psentinel_forced = !forced.is_empty(),
        "{actor}: --force on {service}: {what}"
    );
}

/// One journal line per manual change, with who, what, why, until when, and the override it
/// replaced (a second disable or pause): the trail stays complete.
fn audit(
    service: &str,
    actor: &str,
    what: &str,
    set: Option<&Override>,
    replaced: Option<&Override>,
) {
    let replaces = replaced.map_or(String::new(), |r| {
        format!(
            "; replaces the {what} by {} since {}{}",
            r.by,
            time(r.since),
            described(r)
        )
    });
    tracing::info!(
        psentinel_service = service,
        psentinel_actor = actor,
        psentinel_reason = set.map_or("", |o| o.reason.as_str()),
        psentinel_until = set.map_or(0, |o| o.until),
        psentinel_replaced_by = replaced.map(|r| r.by.as_str()),
        psentinel_replaced_reason = replaced.map(|r| r.reason.as_str()),
        psentinel_replaced_since = replaced.map(|r| r.since),
        psentinel_replaced_until = replaced.map(|r| r.until),
        "{actor}: {what} {service}{}{replaces}",
        set.map_or(String::new(), described),
    );
}
