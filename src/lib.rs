//! psentinel: a health-check agent between HAProxy and back-end services.
//!
//! For each configured service psentinel answers HAProxy's probe on the service's own port,
//! at once and from memory, while a check script written for the application runs in the
//! background; operators take services out and put them back without touching the
//! application.
//!
//! # Shape
//!
//! One task, the [`engine`], owns all state. Check runners ([`check`]), the control socket
//! ([`control`]), D-Bus and signals send it messages; after each change it publishes an
//! immutable [`view::Snapshot`]. Probe responders ([`probe`]) read the latest snapshot and
//! never wait on anything, so an answer to HAProxy never queues behind an operator.
//!
//! Dependencies point one way: readers ([`probe`], [`status`], [`metrics`], [`logging`],
//! [`wait`], the D-Bus bridge) import [`view`], never the engine; the engine imports them to
//! start them. Operations answer typed [`engine::Outcome`]s that each door words itself.
//!
//! # Modules
//!
//! - [`cli`]: the command line. [`config`]: INI files ([`ini`]: the main file and its drop-in
//!   fragments) to typed configuration;
//!   [`lint`]: what `-t` adds (checks that cannot run, a socket systemd does not pass).
//! - [`model`]: admin state, health, and the pure transitions between states.
//! - [`engine`]: the owner task and its [`engine::Handle`], the one door to change state.
//! - [`view`]: what readers see (snapshot, service views, ready-made probe answers).
//! - [`check`]: check runners, timeouts, process groups, orphan reaping. [`plugin`]: what a
//!   check's exit code and output mean (`check_style`, summary, perfdata). [`flap`]: damping.
//! - [`probe`]: HTTP and agent-check responders; the reply table. [`waiting`]: the connections
//!   whose request has not arrived yet, one waiting room per port.
//! - [`control`]: the Unix socket protocol, server and client. [`status`]: status rendering.
//! - [`sockets`]: socket adoption from systemd and binding. [`systemd`]: sd_notify, watchdog.
//!   [`unit`]: following the applications' systemd units (`unit=`) on the system bus.
//! - [`state`]: what survives a restart; [`last_good`]: the configuration that last loaded.
//! - [`daemon`]: start-up and shutdown; [`detach`]: `-d`.
//! - [`logging`]: journald with fields, or stderr.
//! - [`dbus`]: the objects on the system (or session) bus. [`auth`]: who may change state;
//!   [`polkit`]: asking polkitd about a caller.
//! - [`probe_stats`]: probe counters and who is probing, off the engine's path.
//!   [`observer`]: the task that folds probes into those tables, and the silence alarm;
//!   [`linger`]: an answered connection it watches for the prober's close.
//! - [`metrics`]: Prometheus text on `metrics_listen` and `-c metrics`. [`wait`]: `--wait` and
//!   `--wait=drained`. [`capacity`]: the capacity guard of disable and pause (`min_capacity`).

pub mod auth;
pub mod capacity;
pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dbus;
pub mod detach;
pub mod engine;
pub mod flap;
pub mod ini;
pub mod last_good;
pub mod linger;
pub mod lint;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod observer;
pub mod plugin;
pub mod polkit;
pub mod probe;
pub mod probe_stats;
pub mod sockets;
pub mod state;
pub mod status;
pub mod systemd;
pub mod unit;
pub mod view;
pub mod wait;
pub mod waiting;
