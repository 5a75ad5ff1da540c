//! Who may change state, decided the same way for every door (control socket, D-Bus).
//!
//! Reading is open to anyone who can reach a door. Changing state is allowed, in this order:
//! 1. to root and to the daemon's own user (which could signal the daemon anyway);
//! 2. to members of `[general] control_group` (every service, and the commands that concern
//!    every service or the daemon: pause/run without a service, reload, stop_server);
//! 3. for one service, to members of that service's `control_group`;
//! 4. else, when polkitd is installed (the bus starts it), to whom polkit allows ([`crate::polkit`]): the action
//!    `org.psentinel.PSentinel1.manage` with details `service` and `verb` for one service,
//!    `org.psentinel.PSentinel1.manage-all` with `verb` for the rest.
//!
//! polkit adds to the group rules and never takes away from them: what the configuration
//! grants holds whether or not polkitd runs, and without polkitd the groups decide alone.
//!
//! The control socket knows the caller's uid, gid and pid (SO_PEERCRED), and polkit is asked
//! about that process (without interaction: the socket has no way to show a prompt); the bus
//! tells the uid (GetConnectionUnixUser), the user's primary group stands in for the gid, and
//! polkit is asked about the bus name (with interaction when the call allows it).

use crate::polkit::{self, Answer, Polkit, Subject};
use crate::view::Snapshot;

/// What a caller asks to do: a verb on one service, or on every service / the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// None: every service, or the daemon itself.
    pub service: Option<String>,
    /// The control socket's command name (`disable`, `run`, `reload`...): D-Bus methods use
    /// the same words, so a polkit rule is written once for both doors.
    pub verb: &'static str,
}

impl Request {
    pub fn service(name: &str, verb: &'static str) -> Request {
        Request {
            service: Some(name.to_string()),
            verb,
        }
    }

    pub fn daemon(verb: &'static str) -> Request {
        Request {
            service: None,
            verb,
        }
    }
}

/// Who asks, as the door knows them.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The control socket's peer (SO_PEERCRED).
    Process { uid: u32, gid: u32, pid: u32 },
    /// A D-Bus client: its unique name and uid, and whether the call allows interactive
    /// authorization.
    Bus {
        uid: u32,
        sender: String,
        interactive: bool,
    },
}

impl Caller {
    fn uid(&self) -> u32 {
        match self {
            Caller::Process { uid, .. } | Caller::Bus { uid, .. } => *uid,
        }
    }

    /// Whether polkit may ask the person (a D-Bus call that allows it).
    pub fn interactive(&self) -> bool {
        matches!(
            self,
            Caller::Bus {
                interactive: true,
                ..
            }
        )
    }
}

/// Why a caller was allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Root,
    DaemonUser,
    Group(String),
    Polkit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allowed(Grant),
    /// `groups`: those whose members would have been allowed; `polkit`: what it answered.
    Refused {
        groups: Vec<String>,
        polkit: Answer,
    },
}

/// The outcome for one caller, and the name that goes into the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub actor: String,
    pub decision: Decision,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        matches!(self.decision, Decision::Allowed(_))
    }
}

/// Who may change state: see the module's documentation.
pub struct Auth {
    /// `[general] control_group` (read at start).
    pub control_group: String,
    polkit: Polkit,
}

impl Auth {
    pub fn new(control_group: &str) -> Auth {
        Auth {
            control_group: control_group.to_string(),
            polkit: Polkit::default(),
        }
    }

    /// The groups whose members may do `req`: the `[general]` one, then the service's own
    /// (from the running configuration, so a reload changes them).
    pub fn groups_for(&self, req: &Request, snap: &Snapshot) -> Vec<String> {
        let mut groups = vec![self.control_group.clone()];
        if let Some(v) = req.service.as_ref().and_then(|s| snap.services.get(s)) {
            for g in &v.cfg.control_groups {
                if !groups.contains(g) {
                    groups.push(g.clone());
                }
            }
        }
        groups
    }

    /// Decides `req` for `caller`; NSS lookups run off the async threads (they may read
    /// files or ask a network service).
    pub async fn decide(&self, caller: &Caller, req: &Request, snap: &Snapshot) -> Verdict {
        let groups = self.groups_for(req, snap);
        let (uid, gid) = match caller {
            Caller::Process { uid, gid, .. } => (*uid, Some(*gid)),
            Caller::Bus { uid, .. } => (*uid, None),
        };
        let g = groups.clone();
        let local = tokio::task::spawn_blocking(move || (grant(uid, gid, &g), actor_name(uid)));
        let (local, actor) = local.await.unwrap_or_else(|_| (None, format!("uid {uid}")));
        if let Some(grant) = local {
            return Verdict {
                actor,
                decision: Decision::Allowed(grant),
            };
        }
        let answer = self.ask_polkit(caller, req).await;
        let decision = match answer {
            Answer::Yes => {
                // The configuration does not say this one may: the journal says who did.
                tracing::info!(
                    psentinel_actor = %actor,
                    "polkit allows {} of {}",
                    req.verb,
                    req.service.as_deref().unwrap_or("every service")
                );
                Decision::Allowed(Grant::Polkit)
            }
            polkit => Decision::Refused { groups, polkit },
        };
        Verdict { actor, decision }
    }

    async fn ask_polkit(&self, caller: &Caller, req: &Request) -> Answer {
        let (subject, interactive) = match caller {
            Caller::Process { uid, pid, .. } => match Subject::process(*pid, *uid) {
                Some(s) => (s, false),
                // Gone already: nobody to answer, nothing to allow.
                None => return Answer::Failed(format!("process {pid} is gone")),
            },
            Caller::Bus {
                sender,
                interactive,
                ..
            } => (Subject::BusName(sender.clone()), *interactive),
        };
        let (action, details) = match &req.service {
            Some(s) => (
                polkit::ACTION_SERVICE,
                vec![("service", s.as_str()), ("verb", req.verb)],
            ),
            None => (polkit::ACTION_DAEMON, vec![("verb", req.verb)]),
        };
        let answer = self
            .polkit
            .check(&subject, action, &details, interactive)
            .await;
        if let Answer::Failed(why) = &answer {
            tracing::warn!(
                "polkit could not decide {action} for uid {}: {why}; refused",
                caller.uid()
            );
        }
        answer
    }
}

/// The rule that allows `uid` without polkit, if any. Blocking (NSS).
/// `gid` None: known by uid only; the user's primary group counts as its gid.
pub fn grant(uid: u32, gid: Option<u32>, groups: &[String]) -> Option<Grant> {
    if uid == 0 {
        return Some(Grant::Root);
    }
    if uid == nix::unistd::geteuid().as_raw() {
        return Some(Grant::DaemonUser);
    }
    let user = nix::unistd::User::from_uid(uid.into()).ok().flatten();
    let gid = gid.or(user.as_ref().map(|u| u.gid.as_raw()));
    let list = user.as_ref().and_then(|u| {
        let name = std::ffi::CString::new(u.name.clone()).ok()?;
        nix::unistd::getgrouplist(&name, u.gid).ok()
    });
    groups.iter().find_map(|name| {
        // A group that does not exist admits nobody (`-t` names it as an error).
        let Ok(Some(group)) = nix::unistd::Group::from_name(name) else {
            tracing::warn!("control_group '{name}' does not exist: it admits nobody");
            return None;
        };
        let member = gid == Some(group.gid.as_raw())
            || user.as_ref().is_some_and(|u| group.mem.contains(&u.name))
            || list.as_ref().is_some_and(|l| l.contains(&group.gid));
        member.then(|| Grant::Group(name.clone()))
    })
}

/// A user name for the record: "alice", or "uid 1234" when it has no name.
pub fn actor_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

/// "root, the daemon's user or members of group 'psentinel' or 'deploy'": who may, for a
/// refusal's sentence (both doors).
pub fn who_may(groups: &[String]) -> String {
    let quoted: Vec<String> = groups.iter().map(|g| format!("'{g}'")).collect();
    format!("root or membership of group {}", quoted.join(" or "))
}

/// What polkit said, for a refusal's sentence; empty when it was not running.
pub fn polkit_words(a: &Answer) -> String {
    match a {
        Answer::Yes => String::new(),
        Answer::NotRunning => String::new(),
        Answer::No => "; polkit does not allow it either".into(),
        Answer::Challenge => "; polkit asks for authentication, which this request did not \
                              allow (D-Bus: allow interactive authorization)"
            .into(),
        Answer::Failed(why) => format!("; polkit could not decide: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Vec<String> {
        vec!["no-such-group-psentinel-test".into()]
    }

    #[test]
    fn root_and_self_are_always_allowed() {
        assert_eq!(grant(0, Some(12345), &none()), Some(Grant::Root));
        assert_eq!(grant(0, None, &none()), Some(Grant::Root));
        let me = nix::unistd::geteuid().as_raw();
        if me != 0 {
            assert_eq!(grant(me, None, &none()), Some(Grant::DaemonUser));
        }
    }

    #[test]
    fn others_need_a_group_that_exists() {
        // 65534 is nobody on Debian; not us (tests do not run as nobody).
        if nix::unistd::geteuid().as_raw() != 65534 {
            assert_eq!(grant(65534, None, &none()), None);
            assert_eq!(grant(65534, Some(65534), &none()), None);
            // nobody's primary group is nogroup: a member by its gid.
            assert_eq!(
                grant(65534, None, &["nogroup".into()]),
                Some(Grant::Group("nogroup".into()))
            );
        }
    }

    #[test]
    fn unnamed_users_are_recorded_by_uid() {
        assert_eq!(actor_name(0), "root");
        assert_eq!(actor_name(4_000_000_000), "uid 4000000000");
    }
}
