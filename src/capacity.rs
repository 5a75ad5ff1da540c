//! The capacity guard: whether taking services out would leave a load balancer's backend with
//! too little of its usable weight.
//!
//! With `http-check send-state` every probe carries `weight=<this>/<total>` for one HAProxy
//! (`node=`) and one backend (`name=backend/server`): this server's effective weight and the
//! total weight of the servers that backend can use now. The observer keeps the latest header
//! per prober ([`crate::probe_stats`]); this module only reads copies of those tables.
//!
//! For every load balancer that probed in the last [`crate::wait::RECENT`] and sent the
//! header, the weight that would remain is the total less the weight of each service taken out
//! that HAProxy counts in it now ([`HaproxyView::usable`]: UP, weight above 0). A server HAProxy
//! has already taken out (DOWN, NOLB, weight 0) changes nothing. Taking out is refused when
//! what remains is 0 (the last usable server) or below `min_capacity` percent of the total;
//! `min_capacity = off` turns the guard off for that service.
//!
//! Backup servers: HAProxy's total is the weight of its usable *active* servers, or of the
//! backups when no active one is usable; the header does not say whether a server is a backup.
//! A backup server counts like any other, so while the active servers are up, psentinel would
//! count a backup's weight against the actives' total: set `min_capacity = off` on a service
//! that is a backup server. Active servers never count backups as remaining capacity.

use crate::model::Micros;
use crate::probe_stats::{HaproxyView, Prober};
use std::fmt;
use std::net::IpAddr;

/// The `min_capacity` service key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinCapacity {
    /// No guard for this service.
    Off,
    /// Refuse below this percentage (0-100) of the usable weight, and always at none left.
    Percent(u8),
}

impl Default for MinCapacity {
    /// Refuses only taking out the last usable server.
    fn default() -> Self {
        MinCapacity::Percent(0)
    }
}

impl fmt::Display for MinCapacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinCapacity::Off => f.write_str("off"),
            MinCapacity::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// What would remain of one load balancer's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remaining {
    /// The HAProxy `node=`.
    pub node: String,
    pub address: IpAddr,
    pub backend: String,
    /// The services taken out that this backend counts now.
    pub services: Vec<String>,
    /// Weight left after taking them out.
    pub left: u32,
    /// The backend's usable weight now.
    pub total: u32,
    /// The strictest `min_capacity` among those services.
    pub min: u8,
}

impl Remaining {
    /// Below the guard's line: nothing left, or less than `min` percent.
    pub fn short(&self) -> bool {
        self.left == 0 || u64::from(self.left) * 100 < u64::from(self.min) * u64::from(self.total)
    }

    pub fn percent(&self) -> u64 {
        (u64::from(self.left) * 100)
            .checked_div(u64::from(self.total))
            .unwrap_or(0)
    }
}

impl fmt::Display for Remaining {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HAProxy {} ({}) backend {} would keep {} of {} weight ({}%)",
            self.node,
            self.address,
            self.backend,
            self.left,
            self.total,
            self.percent()
        )?;
        if self.left == 0 {
            f.write_str(": no usable server left")
        } else {
            write!(f, ", below min_capacity {}%", self.min)
        }
    }
}

/// What the guard knows about taking some services out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capacity {
    /// No load balancer with send-state probed them lately: no guard.
    Unknown,
    /// Per load balancer and backend that counts at least one of them.
    Known(Vec<Remaining>),
}

/// The guard refused: these backends would fall short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the capacity guard: taking out {}: {}; --force takes it out anyway", services.join(", "), list(short))]
pub struct Shortfall {
    pub services: Vec<String>,
    pub short: Vec<Remaining>,
}

fn list(r: &[Remaining]) -> String {
    let v: Vec<String> = r.iter().map(ToString::to_string).collect();
    v.join("; ")
}

/// One service to take out: its name, its key, and a copy of its prober table.
pub struct Leaving<'a> {
    pub service: &'a str,
    pub min: MinCapacity,
    pub probers: &'a [Prober],
}

/// What would remain of every backend that counts one of `leaving`, seen by a prober with
/// send-state since `since` (µs). Services with `min_capacity = off` are left out.
pub fn assess(leaving: &[Leaving], since: Micros) -> Capacity {
    let mut seen_any = false;
    let mut out: Vec<Remaining> = Vec::new();
    for l in leaving {
        let MinCapacity::Percent(min) = l.min else {
            continue;
        };
        for p in l.probers.iter().filter(|p| p.last_seen >= since) {
            let Some(
                h @ HaproxyView {
                    weight: Some(this),
                    total_weight: Some(total),
                    ..
                },
            ) = &p.haproxy
            else {
                continue;
            };
            seen_any = true;
            let i = match out.iter().position(|r| {
                r.address == p.address && r.node == h.node && r.backend == h.backend()
            }) {
                Some(i) => i,
                None => {
                    out.push(Remaining {
                        node: h.node.clone(),
                        address: p.address,
                        backend: h.backend().to_string(),
                        services: Vec::new(),
                        left: *total,
                        total: *total,
                        min: 0,
                    });
                    out.len() - 1
                }
            };
            let r = &mut out[i];
            if h.usable() {
                r.left = r.left.saturating_sub(*this);
                r.min = r.min.max(min);
                r.services.push(l.service.to_string());
            }
        }
    }
    out.retain(|r| !r.services.is_empty());
    if seen_any {
        Capacity::Known(out)
    } else {
        Capacity::Unknown
    }
}

/// Err when taking `leaving` out would leave a backend short.
pub fn guard(leaving: &[Leaving], since: Micros) -> Result<Capacity, Shortfall> {
    let c = assess(leaving, since);
    if let Capacity::Known(r) = &c {
        let short: Vec<Remaining> = r.iter().filter(|r| r.short()).cloned().collect();
        if !short.is_empty() {
            return Err(Shortfall {
                services: leaving.iter().map(|l| l.service.to_string()).collect(),
                short,
            });
        }
    }
    Ok(c)
}

/// `status`'s view of one service's capacity: what each load balancer counts now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Share {
    pub node: String,
    pub address: IpAddr,
    pub backend: String,
    /// This server's weight, 0 when HAProxy does not count it now.
    pub weight: u32,
    pub total: u32,
}

/// Every recent send-state prober's count, or None: capacity unknown.
pub fn shares(probers: &[Prober], since: Micros) -> Option<Vec<Share>> {
    let v: Vec<Share> = probers
        .iter()
        .filter(|p| p.last_seen >= since)
        .filter_map(|p| {
            let h = p.haproxy.as_ref()?;
            let (w, total) = (h.weight?, h.total_weight?);
            Some(Share {
                node: h.node.clone(),
                address: p.address,
                backend: h.backend().to_string(),
                weight: if h.usable() { w } else { 0 },
                total,
            })
        })
        .collect();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn lb(node: &str, ip: [u8; 4], header: &str, at: Micros) -> Prober {
        Prober {
            address: IpAddr::from(ip),
            kind: "http",
            count: 2,
            last_seen: at,
            prev_seen: at.saturating_sub(1),
            haproxy: crate::probe_stats::parse_haproxy_state(&format!("{header}; node={node}")),
            streak_up: Some(true),
            streak: 2,
            agent_word: None,
        }
    }

    fn one(service: &str, min: MinCapacity, probers: &[Prober]) -> Result<Capacity, Shortfall> {
        guard(
            &[Leaving {
                service,
                min,
                probers,
            }],
            100,
        )
    }

    #[test]
    fn the_last_usable_server_is_refused_by_default() {
        let p = [lb("lb1", [10, 0, 0, 1], "UP; name=be/a; weight=1/2", 200)];
        assert!(one("a", MinCapacity::default(), &p).is_ok());
        let p = [lb("lb1", [10, 0, 0, 1], "UP; name=be/a; weight=1/1", 200)];
        let e = one("a", MinCapacity::default(), &p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "refused by the capacity guard: taking out a: HAProxy lb1 (10.0.0.1) \
             backend be would keep 0 of 1 weight (0%): no usable server left; --force takes it out anyway"
        );
        // Off: no guard at all.
        assert_eq!(one("a", MinCapacity::Off, &p), Ok(Capacity::Unknown));
    }

    #[test]
    fn min_capacity_is_a_share_of_the_usable_weight() {
        let p = [lb("lb1", [10, 0, 0, 1], "UP; name=be/a; weight=1/4", 200)];
        assert!(one("a", MinCapacity::Percent(75), &p).is_ok(), "3/4 = 75%");
        let e = one("a", MinCapacity::Percent(76), &p).unwrap_err();
        assert!(
            e.short[0].to_string().ends_with("below min_capacity 76%"),
            "{e}"
        );
    }

    #[test]
    fn a_server_haproxy_already_took_out_changes_nothing() {
        for h in [
            "DOWN; name=be/a; weight=1/1",
            "NOLB; name=be/a; weight=0/1",
            "UP; name=be/a; weight=0/1",
        ] {
            let p = [lb("lb1", [10, 0, 0, 1], h, 200)];
            assert_eq!(
                one("a", MinCapacity::default(), &p),
                Ok(Capacity::Known(vec![])),
                "{h}"
            );
        }
        // Going down is still counted: HAProxy still sends it traffic.
        let p = [lb(
            "lb1",
            [10, 0, 0, 1],
            "UP 1/2; name=be/a; weight=1/1",
            200,
        )];
        assert!(one("a", MinCapacity::default(), &p).is_err());
    }

    #[test]
    fn every_recent_load_balancer_is_consulted_and_stale_ones_are_not() {
        let p = [
            lb("lb1", [10, 0, 0, 1], "UP; name=be/a; weight=1/2", 200),
            lb("lb2", [10, 0, 0, 2], "UP; name=be/a; weight=1/1", 200),
        ];
        let e = one("a", MinCapacity::default(), &p).unwrap_err();
        assert_eq!(e.short.len(), 1);
        assert_eq!(e.short[0].node, "lb2");
        // lb2 last probed before the window: only lb1 counts.
        let p = [
            p[0].clone(),
            lb("lb2", [10, 0, 0, 2], "UP; name=be/a; weight=1/1", 99),
        ];
        assert!(one("a", MinCapacity::default(), &p).is_ok());
        // Only a stale or header-less prober: unknown.
        let mut curl = p[1].clone();
        curl.haproxy = None;
        curl.last_seen = 200;
        assert_eq!(
            one("a", MinCapacity::default(), &[curl]),
            Ok(Capacity::Unknown)
        );
    }

    #[test]
    fn a_pause_of_several_services_counts_them_together_per_backend() {
        let a = [lb("lb1", [10, 0, 0, 1], "UP; name=be/a; weight=1/3", 200)];
        let b = [lb("lb1", [10, 0, 0, 1], "UP; name=be/b; weight=1/3", 200)];
        let c = [lb(
            "lb1",
            [10, 0, 0, 1],
            "UP; name=other/c; weight=1/2",
            200,
        )];
        let leaving = |min| {
            [
                Leaving {
                    service: "a",
                    min,
                    probers: &a,
                },
                Leaving {
                    service: "b",
                    min,
                    probers: &b,
                },
                Leaving {
                    service: "c",
                    min,
                    probers: &c,
                },
            ]
        };
        let Ok(Capacity::Known(r)) = guard(&leaving(MinCapacity::Percent(30)), 100) else {
            panic!()
        };
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].left, r[0].total, &r[0].services[..]),
            (1, 3, &["a".to_string(), "b".into()][..])
        );
        let e = guard(&leaving(MinCapacity::Percent(34)), 100).unwrap_err();
        assert_eq!(e.short.len(), 1, "{e}");
        assert_eq!(e.short[0].backend, "be");
    }

    #[test]
    fn shares_say_unknown_without_send_state() {
        let p = [lb("lb1", [10, 0, 0, 1], "DOWN; name=be/a; weight=1/1", 200)];
        let s = shares(&p, 100).unwrap();
        assert_eq!((s[0].weight, s[0].total), (0, 1));
        assert_eq!(shares(&p, 300), None);
    }
}
