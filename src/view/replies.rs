//! The ready-made probe answers of one service state: the HTTP response (with and without a
//! body) and the agent-check line, rendered once per change so that a probe only copies bytes.
//!
//! The wire formats (status line, reason phrase, agent words) are described in
//! [`crate::probe`]; this module only renders them.

use crate::model::State;
use std::sync::Arc;

/// Pre-rendered answers for one service state.
#[derive(Debug, Clone)]
pub struct Replies {
    pub state: State,
    pub status: u16,
    pub full: Arc<[u8]>,
    pub head: Arc<[u8]>,
    pub agent: Arc<[u8]>,
}

/// Reason phrases go on the status line: one line of printable text, bounded.
pub fn sanitize_reason(reason: &str) -> String {
    let mut s: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

pub fn http_response(status: u16, reason: &str, body: &str, with_body: bool) -> Arc<[u8]> {
    let mut r = format!(
        "HTTP/1.0 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if with_body {
        r.push_str(body);
    }
    Arc::from(r.into_bytes())
}

/// What the agent line says besides the state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentExtra {
    /// The check passes (or there is none, or it is stopped): `up` rather than `down` next to
    /// `maint` / `drain`.
    pub passing: bool,
    /// Share of the server's weight (`weight=NN%` from the check's output), sent while up.
    pub weight: Option<u8>,
}

impl Replies {
    pub fn new(service: &str, state: State, status: u16, reason: &str) -> Replies {
        let extra = AgentExtra {
            passing: state == State::Up,
            weight: None,
        };
        Replies::with_agent(service, state, status, reason, extra)
    }

    pub fn with_agent(
        service: &str,
        state: State,
        status: u16,
        reason: &str,
        extra: AgentExtra,
    ) -> Replies {
        let reason = sanitize_reason(reason);
        let body = format!("{service} {state} {reason}\n");
        let health = if extra.passing { "up" } else { "down" };
        let agent = match state {
            State::Up => match extra.weight {
                Some(w) => format!("up ready {w}% #{reason}\n"),
                None => format!("up ready #{reason}\n"),
            },
            State::Down | State::Starting => format!("down ready #{reason}\n"),
            State::Disabled => format!("maint {health} #{reason}\n"),
            State::Paused => format!("drain {health} #{reason}\n"),
            // Passing, but asking for no new traffic: HAProxy drains the server.
            State::Warning => format!("drain up #{reason}\n"),
        };
        Replies {
            state,
            status,
            full: http_response(status, &reason, &body, true),
            head: http_response(status, &reason, &body, false),
            agent: Arc::from(agent.into_bytes()),
        }
    }
}

/// The weight a check asks for: the last line of its output that reads `weight=NN%`, NN in
/// 0..=100. Lines that only look similar (`weight=75`, `weight=150%`, `x weight=5%`) do not
/// count, so ordinary output cannot change a weight by accident.
pub fn weight_from_output(output: &str) -> Option<u8> {
    output.lines().rev().find_map(|line| {
        let n = line.trim().strip_prefix("weight=")?.strip_suffix('%')?;
        if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse::<u8>().ok().filter(|w| *w <= 100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_complete_http() {
        let r = Replies::new("web", State::Disabled, 503, "Disabled: deploy\r\nX-Evil: 1");
        let full = String::from_utf8(r.full.to_vec()).unwrap();
        assert!(
            full.starts_with("HTTP/1.0 503 Disabled: deploy  X-Evil: 1\r\n"),
            "{full}"
        );
        let (head, body) = full.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: close") && head.contains("Content-Type: text/plain"));
        assert_eq!(body, "web disabled Disabled: deploy  X-Evil: 1\n");
        assert!(r.head.ends_with(b"\r\n\r\n"));
        assert_eq!(&*r.agent, b"maint down #Disabled: deploy  X-Evil: 1\n");
        assert_eq!(
            &*Replies::new("w", State::Up, 200, "OK").agent,
            b"up ready #OK\n"
        );
        assert_eq!(
            &*Replies::new("w", State::Down, 500, "Check failed: exit 1").agent,
            b"down ready #Check failed: exit 1\n"
        );
        let passing = |weight| AgentExtra {
            passing: true,
            weight,
        };
        let agent = |state, extra| Replies::with_agent("w", state, 200, "why", extra).agent;
        assert_eq!(
            &*agent(State::Up, passing(Some(75))),
            b"up ready 75% #why\n"
        );
        assert_eq!(
            &*agent(State::Paused, passing(Some(75))),
            b"drain up #why\n"
        );
        assert_eq!(&*agent(State::Disabled, passing(None)), b"maint up #why\n");
        assert_eq!(&*agent(State::Warning, passing(None)), b"drain up #why\n");
    }

    #[test]
    fn weight_lines() {
        assert_eq!(weight_from_output("checking\nweight=75%\n"), Some(75));
        assert_eq!(weight_from_output("  weight=0% \n"), Some(0));
        assert_eq!(weight_from_output("weight=100%"), Some(100));
        assert_eq!(weight_from_output("weight=20%\nweight=60%\n"), Some(60));
        assert_eq!(weight_from_output("weight=20%\nweight=160%\n"), Some(20));
        for no in [
            "",
            "weight=75",
            "weight=%",
            "weight=101%",
            "weight=-5%",
            "weight=7.5%",
            "weight=0075%",
            "load weight=5%",
            "weight = 5%",
        ] {
            assert_eq!(weight_from_output(no), None, "{no:?}");
        }
    }
}
