//! The Unix control socket: the classic `psentinel -c COMMAND` interface.
//!
//! `proto` is the wire format and command table, shared by both ends, `usage` what is wrong
//! with a request; `server` runs in the
//! daemon and forwards to the engine's [`crate::engine::Handle`], `words` puts the engine's
//! answers into the socket's words; `admit` keeps connections free for operators; `client` is
//! `psentinel -c`.

pub mod admit;
pub mod client;
pub mod proto;
pub mod server;
pub mod usage;
pub mod words;
