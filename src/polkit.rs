//! Asking polkit (`org.freedesktop.PolicyKit1` on the system bus) whether a caller may do
//! something: the one call psentinel needs, `CheckAuthorization`, by hand (a small proxy).
//!
//! polkit is asked whenever it is installed: Debian's polkitd is started by the bus on the
//! first question (its unit is static, nothing else starts it on a server), so the call lets
//! the bus activate it. "Not running" (no system bus, polkitd not installed, or its unit
//! masked by an operator who wants it off) is an answer of its own that leaves the decision
//! to the group rules ([`crate::auth`]).
//!
//! The daemon runs as user `psentinel`, not root. polkit answers a caller that is not root
//! about another process, or with details, only if the action names that caller's user as
//! its owner: the shipped `.policy` carries `org.freedesktop.policykit.owner` =
//! `unix-user:psentinel` for that.

use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::Mutex;
use zbus::zvariant::{OwnedValue, Type, Value};

/// The action for changing one service (details: `service`, `verb`).
pub const ACTION_SERVICE: &str = "org.psentinel.PSentinel1.manage";
/// The action for what concerns every service or the daemon (details: `verb`).
pub const ACTION_DAEMON: &str = "org.psentinel.PSentinel1.manage-all";

/// How long a question without interaction may take; polkitd answers in milliseconds.
const QUICK: Duration = Duration::from_secs(10);
/// With interaction a person types a password; the bus gives up on the caller's call after
/// its own timeout (25 s by default for busctl) anyway, but a slow typist must not be cut
/// short by us first.
const INTERACTIVE: Duration = Duration::from_secs(300);
/// `AllowUserInteraction` in CheckAuthorization's flags.
const ALLOW_USER_INTERACTION: u32 = 1;

/// Who polkit is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A D-Bus client, by its unique name: polkit asks the bus for its process and user.
    BusName(String),
    /// A local process: pid, its start time (clock ticks since boot, field 22 of
    /// /proc/PID/stat, so a reused pid is not taken for it) and its uid.
    Process { pid: u32, start_time: u64, uid: u32 },
}

impl Subject {
    /// A process known by its pid (SO_PEERCRED): None when its start time cannot be read
    /// (it has exited).
    pub fn process(pid: u32, uid: u32) -> Option<Subject> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces and parentheses: count after the last ')'.
        let after = &stat[stat.rfind(')')? + 1..];
        let start_time = after.split_whitespace().nth(19)?.parse().ok()?;
        Some(Subject::Process {
            pid,
            start_time,
            uid,
        })
    }

    fn wire(&self) -> WireSubject {
        let mut details = HashMap::new();
        let kind = match self {
            Subject::BusName(name) => {
                details.insert("name".to_string(), owned(Value::from(name.as_str())));
                "system-bus-name"
            }
            Subject::Process {
                pid,
                start_time,
                uid,
            } => {
                details.insert("pid".to_string(), owned(Value::from(*pid)));
                details.insert("start-time".to_string(), owned(Value::from(*start_time)));
                // polkit's type for the uid is int32.
                details.insert("uid".to_string(), owned(Value::from(*uid as i32)));
                "unix-process"
            }
        };
        WireSubject {
            kind: kind.into(),
            details,
        }
    }
}

fn owned(v: Value<'_>) -> OwnedValue {
    v.try_to_owned()
        .expect("plain values have no file descriptors")
}

/// polkit's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// The user could be allowed after authenticating, which this question did not allow
    /// (no interaction asked for, or no authentication agent to ask with).
    Challenge,
    /// polkitd does not run (or there is no system bus): the group rules decide alone.
    NotRunning,
    /// polkitd runs but the question failed (e.g. the action is not installed, or the
    /// `.policy` lacks the owner annotation); counted as no.
    Failed(String),
}

#[derive(Debug, serde::Serialize, Type)]
struct WireSubject {
    kind: String,
    details: HashMap<String, OwnedValue>,
}

#[derive(Debug, serde::Deserialize, Type)]
struct WireResult {
    is_authorized: bool,
    is_challenge: bool,
    _details: HashMap<String, String>,
}

#[zbus::proxy(
    interface = "org.freedesktop.PolicyKit1.Authority",
    default_service = "org.freedesktop.PolicyKit1",
    default_path = "/org/freedesktop/PolicyKit1/Authority",
    gen_blocking = false
)]
trait Authority {
    fn check_authorization(
        &self,
        subject: &WireSubject,
        action_id: &str,
        details: &HashMap<&str, &str>,
        flags: u32,
        cancellation_id: &str,
    ) -> zbus::Result<WireResult>;
}

/// A client of polkit on the system bus, connected on first use and again after the bus
/// went away.
#[derive(Default)]
pub struct Polkit {
    conn: Mutex<Option<zbus::Connection>>,
}

impl Polkit {
    pub async fn check(
        &self,
        subject: &Subject,
        action: &str,
        details: &[(&str, &str)],
        interactive: bool,
    ) -> Answer {
        let Some(conn) = self.connection().await else {
            return Answer::NotRunning;
        };
        let details: HashMap<&str, &str> = details.iter().copied().collect();
        let flags = if interactive {
            ALLOW_USER_INTERACTION
        } else {
            0
        };
        let ask = async {
            let proxy = AuthorityProxy::builder(&conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            proxy
                .check_authorization(&subject.wire(), action, &details, flags, "")
                .await
        };
        let limit = if interactive { INTERACTIVE } else { QUICK };
        match tokio::time::timeout(limit, ask).await {
            Err(_) => Answer::Failed(format!("polkit gave no answer within {}s", limit.as_secs())),
            Ok(Ok(r)) if r.is_authorized => Answer::Yes,
            Ok(Ok(r)) if r.is_challenge => Answer::Challenge,
            Ok(Ok(_)) => Answer::No,
            Ok(Err(e)) if not_running(&e) => Answer::NotRunning,
            Ok(Err(e)) => {
                if conn.is_closed() {
                    *self.conn.lock().await = None;
                }
                Answer::Failed(e.to_string())
            }
        }
    }

    /// The system bus connection, made now if there is none; None without a system bus.
    async fn connection(&self) -> Option<zbus::Connection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Some(c.clone());
        }
        let made = tokio::time::timeout(QUICK, zbus::Connection::system()).await;
        match made {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                tracing::debug!("polkit: no system bus: {e}");
                None
            }
            Err(_) => {
                tracing::debug!("polkit: the system bus did not answer");
                None
            }
        }
    }
}

/// The bus says polkitd is not there and cannot be started: not installed, or its unit
/// masked (systemd's activation error, passed on by the bus).
fn not_running(e: &zbus::Error) -> bool {
    match e {
        zbus::Error::MethodError(name, _, _) => {
            matches!(
                name.as_str(),
                "org.freedesktop.DBus.Error.ServiceUnknown"
                    | "org.freedesktop.DBus.Error.NameHasNoOwner"
                    | "org.freedesktop.systemd1.UnitMasked"
            ) || name.starts_with("org.freedesktop.DBus.Error.Spawn.")
        }
        zbus::Error::FDO(e) => matches!(
            **e,
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_)
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_named_with_its_start_time() {
        let me = std::process::id();
        let Some(Subject::Process {
            pid, start_time, ..
        }) = Subject::process(me, 0)
        else {
            panic!("no start time for our own pid");
        };
        assert_eq!(pid, me);
        assert!(start_time > 0);
        assert_eq!(Subject::process(u32::MAX, 0), None);
    }

    #[test]
    fn subjects_have_polkits_shape() {
        assert_eq!(WireSubject::SIGNATURE.to_string(), "(sa{sv})");
        assert_eq!(WireResult::SIGNATURE.to_string(), "(bba{ss})");
        let w = Subject::Process {
            pid: 7,
            start_time: 9,
            uid: 1000,
        }
        .wire();
        assert_eq!(w.kind, "unix-process");
        assert_eq!(w.details["uid"], owned(Value::from(1000i32)));
    }
}
