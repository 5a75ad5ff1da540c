//! Integration tests: the real `psentinel` binary, driven only through its probe ports, its
//! control socket (`psentinel -c`) and, per suite, real HAProxy, dbus-daemon and systemd.
//! One test binary; `support` is the shared harness.

mod haproxy_support;
mod ports;
mod support;
mod sysbox;

mod access;
mod alerts;
mod checks;
mod cli;
mod core;
mod dbus;
mod deploy;
mod docs;
mod dropin;
mod fuzz_seeds;
mod haproxy;
mod hostile;
mod manual;
mod observe;
mod operator;
mod packages;
mod plugins;
mod polkit;
mod reload;
mod restart;
mod systemd;
mod units;
