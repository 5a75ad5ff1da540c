//! Who may change state, decided the same way for every door (control socket, D-Bus).
//!
//! Reading is open to anyone who can reach a door; changing state needs root, the daemon's
//! own user, or membership of `control_group`. The control socket knows the caller's uid and
//! gid from SO_PEERCRED; the bus only tells the uid (GetConnectionUnixUser), so there the
//! user's primary group stands in for the gid.

/// Who may change state: root, the daemon's own user, members of `control_group`.
pub struct Auth {
    pub control_group: String,
}

/// The outcome for one caller: allowed or not, and the name that goes into the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub actor: String,
}

impl Auth {
    /// Blocking NSS lookups: call from spawn_blocking (or use [`Auth::decide`]).
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        self.allows_ids(uid, Some(gid))
    }

    /// For callers known by uid only (D-Bus): the user's primary group counts as its gid.
    /// Blocking, like [`Auth::allows`].
    pub fn allows_uid(&self, uid: u32) -> bool {
        let gid = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw());
        self.allows_ids(uid, gid)
    }

    fn allows_ids(&self, uid: u32, gid: Option<u32>) -> bool {
        if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
            return true;
        }
        let Ok(Some(group)) = nix::unistd::Group::from_name(&self.control_group) else {
            return false;
        };
        if gid == Some(group.gid.as_raw()) {
            return true;
        }
        let Ok(Some(user)) = nix::unistd::User::from_uid(uid.into()) else {
            return false;
        };
        let Ok(cname) = std::ffi::CString::new(user.name.clone()) else {
            return false;
        };
        group.mem.contains(&user.name)
            || nix::unistd::getgrouplist(&cname, user.gid).is_ok_and(|gs| gs.contains(&group.gid))
    }

    /// Decides off the async threads (NSS may read files or ask a network service).
    /// `gid` None: known by uid only.
    pub async fn decide(self: &std::sync::Arc<Self>, uid: u32, gid: Option<u32>) -> Verdict {
        let me = self.clone();
        tokio::task::spawn_blocking(move || Verdict {
            allowed: match gid {
                Some(g) => me.allows(uid, g),
                None => me.allows_uid(uid),
            },
            actor: actor_name(uid),
        })
        .await
        .unwrap_or_else(|_| Verdict {
            allowed: false,
            actor: format!("uid {uid}"),
        })
    }
}

/// A user name for the record: "alice", or "uid 1234" when it has no name.
pub fn actor_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_self_are_always_allowed() {
        let a = Auth {
            control_group: "no-such-group-psentinel-test".into(),
        };
        assert!(a.allows(0, 12345));
        assert!(a.allows_uid(0));
        assert!(a.allows_uid(nix::unistd::geteuid().as_raw()));
    }

    #[test]
    fn others_need_the_group() {
        let a = Auth {
            control_group: "no-such-group-psentinel-test".into(),
        };
        // 65534 is nobody on Debian; not us (tests do not run as nobody).
        if nix::unistd::geteuid().as_raw() != 65534 {
            assert!(!a.allows_uid(65534));
            assert!(!a.allows(65534, 65534));
        }
    }

    #[test]
    fn unnamed_users_are_recorded_by_uid() {
        assert_eq!(actor_name(0), "root");
        assert_eq!(actor_name(4_000_000_000), "uid 4000000000");
    }
}
