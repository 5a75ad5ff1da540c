//! The control socket's words for what the engine answers: one line a person reads (and a
//! script may grep), ending in a newline.

use crate::capacity::Remaining;
use crate::engine::{CheckRun, Outcome, Reloaded};
use crate::model::Micros;
use crate::status::{override_text, time};

pub fn outcome(o: &Outcome) -> String {
    let mut s = match o {
        Outcome::Enabled {
            service,
            was_disabled: true,
        } => format!("{service} enabled"),
        Outcome::Enabled { service, .. } => format!("{service} was not disabled; nothing to do"),
        Outcome::Disabled {
            service,
            until: u,
            replaced,
            forced,
        } => {
            let mut s = format!("{service} disabled{}", until(*u));
            if let Some(r) = replaced {
                s += &format!("; replaced the disable {}", override_text(r));
            }
            s + &forced_text(forced)
        }
        Outcome::Paused {
            services,
            until: u,
            replaced,
            forced,
        } => {
            let mut s = format!("paused: {}{}", services.join(", "), until(*u));
            for (name, r) in replaced {
                s += &format!("; replaced the pause of {name} {}", override_text(r));
            }
            s + &forced_text(forced)
        }
        Outcome::Resumed { services } => format!("running: {}", services.join(", ")),
        Outcome::ChecksStopped { service } => {
            format!("{service}: check stopped; the service counts as passing")
        }
        Outcome::ChecksRestarted { service } => format!("{service}: check restarted"),
        Outcome::UnitStopping { unit, services } => {
            format!(
                "{unit} stopping: out until it is active again: {}",
                services.join(", ")
            )
        }
        Outcome::UnitStarted { unit, services } => {
            format!(
                "{unit} started: answering from the unit and the checks again: {}",
                services.join(", ")
            )
        }
        Outcome::Reloaded(r) => format!("reloaded: {}", reloaded(r)),
        Outcome::Pong => "pong".into(),
    };
    s.push('\n');
    s
}

/// What `--force` overrode: the capacity guard's words.
fn forced_text(forced: &[Remaining]) -> String {
    forced.iter().map(|r| format!("; forced: {r}")).collect()
}

fn until(u: Option<Micros>) -> String {
    u.map_or(String::new(), |u| format!(" until {}", time(u)))
}

fn reloaded(r: &Reloaded) -> String {
    let mut s = r.summary();
    if !r.check_changed.is_empty() {
        s += &format!(
            "; check command changed, result dropped: [{}]",
            r.check_changed.join(", ")
        );
    }
    if !r.pending_restart.is_empty() {
        s += &format!(
            "; [general] takes effect at the next restart: {}",
            r.pending_restart.join(", ")
        );
    }
    s
}

/// `test SERVICE`: the exit status, how it ended, how long it took, then the output.
pub fn check_run(service: &str, run: &CheckRun) -> String {
    match run {
        CheckRun::Ran(r) => format!(
            "{service}: {} after {} ms\n{}",
            r.exit.describe(),
            r.duration_us / 1000,
            r.output
        ),
        CheckRun::NoCheck => format!("{service}: exit status 0 after 0 ms\n{NO_CHECK}"),
    }
}

/// What `test` says of a service without a check (D-Bus `RunCheck` says it too).
pub const NO_CHECK: &str = "no check_script configured: the service counts as passing";
