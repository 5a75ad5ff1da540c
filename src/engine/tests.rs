//! The engine in-process, on tokio's paused clock: no real sleeping, no daemon. Check results
//! are handed to the engine as its runners would (the runners' own processes are tested in
//! `check`); probe ports bind on 127.0.0.1.

use super::*;
use crate::model::{micros, Admin, CheckResult, Exit, HealthTracker, Micros, State};
use crate::state::Saved;
use std::path::PathBuf;
use std::time::SystemTime;

struct Bench {
    dir: tempfile::TempDir,
    /// Service sections, `{port}` and `{port2}` filled in.
    services: String,
    general: String,
}

// The integration tests' port reservation: a port from the ephemeral range (what binding
// port 0 gives) was taken by another test's outgoing connection before the engine bound it.
#[path = "../../tests/it/ports.rs"]
mod ports;
use ports::free_port;

impl Bench {
    fn new(services: &str) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let services = services
            .replace("{port}", &free_port().to_string())
            .replace("{port2}", &free_port().to_string());
        let general = format!(
            "[general]\nsock_file={0}/s.sock\npid_file={0}/p.pid\nstate_dir={0}/state\ndbus=off\n",
            dir.path().display()
        );
        let b = Bench {
            dir,
            services,
            general,
        };
        b.write();
        b
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("psentinel.cfg")
    }

    fn write(&self) {
        std::fs::write(self.file(), format!("{}\n{}", self.services, self.general)).unwrap();
    }

    fn rewrite(&mut self, from: &str, to: &str) {
        assert!(
            self.services.contains(from),
            "{from:?} in {}",
            self.services
        );
        self.services = self.services.replace(from, to);
        self.write();
    }

    fn save_state(&self, saved: &Saved) {
        crate::state::Store::new(&self.dir.path().join("state"))
            .save(saved)
            .unwrap();
    }

    fn parts(&self) -> Parts {
        Parts {
            sockets: Sockets::default(),
            processes: Processes::new(false),
            in_flight: TaskTracker::new(),
            notes: Notes::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// The engine with its configuration applied, its loop not running: driven by calls.
    fn engine(&self) -> Engine {
        let cfg = Config::load(&self.file()).unwrap();
        Engine::new(cfg, self.parts()).unwrap().0
    }
}

fn view<'a>(e: &'a Engine, name: &str) -> &'a ServiceView {
    &e.services[name].view
}

/// A finished run, handed over as the service's current runner would.
fn check_done(e: &mut Engine, name: &str, exit: Exit) {
    check_said(e, name, exit, "");
}

/// A finished run that printed `output`.
fn check_said(e: &mut Engine, name: &str, exit: Exit, output: &str) {
    let runner = e.services[name].runner.as_ref().expect("a runner").id;
    let result = CheckResult {
        exit,
        time: e.clock.now(),
        duration_us: 1000,
        output: output.to_string(),
        first_line: output.lines().next().unwrap_or("").to_string(),
    };
    e.on_check_done(CheckDone {
        service: name.into(),
        runner,
        result,
        settled: false,
    });
}

fn op(e: &mut Engine, op: handle::Op) -> Outcome {
    e.op(op, "root").unwrap()
}

const CHECKED: &str = "[web]\nport={port}\nbind=127.0.0.1\npausable=yes\ncheck_script=/bin/true\n\
     check_script_interval=10\ncheck_timeout=2\nrise=2\nfall=2\n";

#[tokio::test(start_paused = true)]
async fn a_timed_disable_runs_out_on_time() {
    let b = Bench::new("[web]\nport={port}\nbind=127.0.0.1\n");
    let cfg = Config::load(&b.file()).unwrap();
    let (h, _task) = Engine::start(cfg, b.parts()).unwrap();
    let out = h
        .disable("web", "deploy", Some(Duration::from_secs(1800)), "root")
        .await
        .unwrap();
    let Outcome::Disabled {
        until: Some(until),
        replaced: None,
        ..
    } = out
    else {
        panic!("{out:?}");
    };
    let since = h.snapshot().services["web"]
        .admin
        .disabled
        .clone()
        .unwrap()
        .since;
    assert_eq!(until - since, 1_800_000_000);
    tokio::time::sleep(Duration::from_secs(1799)).await;
    assert_eq!(h.snapshot().services["web"].state, State::Disabled);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snap = h.snapshot();
    assert_eq!(snap.services["web"].state, State::Up, "lifted at its time");
    assert!(snap.services["web"].admin.disabled.is_none());
}

#[tokio::test(start_paused = true)]
async fn rise_and_fall_smooth_the_check() {
    let b = Bench::new(CHECKED);
    let mut e = b.engine();
    assert_eq!(view(&e, "web").state, State::Starting);
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(view(&e, "web").state, State::Up, "the first result decides");
    check_done(&mut e, "web", Exit::Code(1));
    assert_eq!(view(&e, "web").state, State::Up, "1 of fall=2");
    check_done(&mut e, "web", Exit::Code(1));
    assert_eq!(view(&e, "web").state, State::Down);
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(view(&e, "web").state, State::Down, "1 of rise=2");
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(view(&e, "web").state, State::Up);
    assert_eq!(view(&e, "web").checks_count, 5);
}

const PLUGIN: &str = "[web]\nport={port}\nbind=127.0.0.1\ncheck_script=/bin/true\n\
     check_style=nagios\nagent_port={port2}\n";

#[tokio::test(start_paused = true)]
async fn a_plugin_warning_drains_with_its_own_words() {
    let mut b = Bench::new(PLUGIN);
    let mut e = b.engine();
    let said = "DISK WARNING - free space: / 850 MB (8%) | /=850MB;900;950;0;10000";
    check_said(&mut e, "web", Exit::Code(1), said);
    let v = view(&e, "web");
    assert_eq!(v.state, State::Warning);
    assert_eq!(v.http_status, 200, "warning_status defaults to 200");
    assert_eq!(v.reason, "DISK WARNING - free space: / 850 MB (8%)");
    assert_eq!(
        &*v.replies.agent,
        b"drain up #DISK WARNING - free space: / 850 MB (8%)\n"
    );
    assert_eq!(v.perfdata.len(), 1);
    assert_eq!(
        (v.perfdata[0].label.as_str(), v.perfdata[0].value),
        ("/", 850.0)
    );
    check_said(&mut e, "web", Exit::Code(3), "");
    let v = view(&e, "web");
    assert_eq!(
        (v.state, v.reason.as_str()),
        (State::Down, "Check failed: exit 3")
    );
    assert!(v.perfdata.is_empty());
    check_said(&mut e, "web", Exit::Code(0), "OK - fine|t=1s");
    assert_eq!(view(&e, "web").reason, "OK - fine");

    // With fall=2, one CRITICAL leaves the service up: its words do not become the reason.
    b.rewrite("check_style=nagios\n", "check_style=nagios\nfall=2\n");
    e.apply(Config::load(&b.file()).unwrap(), None).unwrap();
    check_said(&mut e, "web", Exit::Code(2), "CRITICAL - gone");
    let v = view(&e, "web");
    assert_eq!(
        (v.state, v.reason.as_str()),
        (State::Up, "OK: check passed")
    );
    assert_eq!(
        v.summary, "CRITICAL - gone",
        "the last run's words, in status"
    );
    check_said(&mut e, "web", Exit::Code(2), "CRITICAL - gone");
    assert_eq!(view(&e, "web").reason, "CRITICAL - gone");
    b.rewrite("fall=2\n", "");
    e.apply(Config::load(&b.file()).unwrap(), None).unwrap();

    b.rewrite(
        "check_style=nagios\n",
        "check_style=nagios\nwarning_status=404\n",
    );
    e.apply(Config::load(&b.file()).unwrap(), None).unwrap();
    check_said(&mut e, "web", Exit::Code(1), said);
    assert_eq!(view(&e, "web").http_status, 404);
    b.rewrite("check_style=nagios\n", "check_style=plain\n");
    e.apply(Config::load(&b.file()).unwrap(), None).unwrap();
    check_said(&mut e, "web", Exit::Code(1), said);
    let v = view(&e, "web");
    assert_eq!(
        (v.state, v.reason.as_str()),
        (State::Down, "Check failed: exit 1")
    );
    assert_eq!(
        v.summary, "DISK WARNING - free space: / 850 MB (8%)",
        "shown all the same"
    );
}

/// `--wait` on a warning service expects what psentinel answers each kind of prober.
#[tokio::test(start_paused = true)]
async fn a_warning_is_waited_for_as_answered_and_counted_as_a_warning() {
    use crate::wait::{Goal, NotWaiting, Want};
    let mut b = Bench::new(PLUGIN);
    let mut e = b.engine();
    check_said(&mut e, "web", Exit::Code(1), "WARNING - slow");
    let snap = e.snap_tx.borrow().clone();
    assert_eq!(snap.services["web"].state, State::Warning);
    let goal = |w: Want| w.targets(&snap).map(|t| t[0].goal);
    let web = || Some(vec!["web".to_string()]);
    // warning_status=200: HAProxy's HTTP check keeps it UP, the agent-check drains it.
    let kept = Ok(Goal::Warning { http_in: true });
    assert_eq!(goal(Want::new(Goal::In, web())), kept);
    assert_eq!(
        goal(Want::current("web", &snap)),
        kept,
        "D-Bus WaitForHAProxy"
    );
    assert!(matches!(
        goal(Want::drained("web")),
        Err(NotWaiting::WillNotAct { .. })
    ));
    let c = snap.services["web"].checks_by_result;
    assert_eq!((c.pass, c.warning, c.fail), (0, 1, 0));

    b.rewrite(
        "check_style=nagios\n",
        "check_style=nagios\nwarning_status=404\n",
    );
    e.apply(Config::load(&b.file()).unwrap(), None).unwrap();
    check_said(&mut e, "web", Exit::Code(1), "WARNING - slow");
    let snap = e.snap_tx.borrow().clone();
    let goal = |w: Want| w.targets(&snap).map(|t| t[0].goal);
    let out = Ok(Goal::Warning { http_in: false });
    assert_eq!(goal(Want::new(Goal::In, web())), out);
    assert_eq!(goal(Want::current("web", &snap)), out);
    assert_eq!(goal(Want::drained("web")), Ok(Goal::Drained));
    check_said(&mut e, "web", Exit::Code(2), "CRITICAL - gone");
    let snap = e.snap_tx.borrow().clone();
    assert!(matches!(
        Want::new(Goal::In, web()).targets(&snap),
        Err(NotWaiting::WillNotAct { .. })
    ));
    let c = snap.services["web"].checks_by_result;
    assert_eq!((c.pass, c.warning, c.fail), (0, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn min_weight_is_a_floor_for_passing_weights() {
    let b =
        Bench::new("[web]\nport={port}\nbind=127.0.0.1\ncheck_script=/bin/true\nmin_weight=30\n");
    let mut e = b.engine();
    check_said(&mut e, "web", Exit::Code(0), "weight=5%\n");
    assert_eq!(view(&e, "web").agent_weight, Some(30));
    check_said(&mut e, "web", Exit::Code(0), "weight=80%\n");
    assert_eq!(view(&e, "web").agent_weight, Some(80));
    check_said(&mut e, "web", Exit::Code(0), "no weight\n");
    assert_eq!(
        view(&e, "web").agent_weight,
        None,
        "HAProxy keeps its own weight"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flapping_check_is_held_down_until_stable() {
    let b = Bench::new(
        "[web]\nport={port}\nbind=127.0.0.1\ncheck_script=/bin/true\n\
         flap_max_changes=1\nflap_window=60\nflap_hold=30\n",
    );
    let mut e = b.engine();
    check_done(&mut e, "web", Exit::Code(0));
    check_done(&mut e, "web", Exit::Code(1));
    assert_eq!(
        view(&e, "web").flapping_since,
        None,
        "one change is allowed"
    );
    tokio::time::advance(Duration::from_secs(5)).await;
    check_done(&mut e, "web", Exit::Code(0));
    let v = view(&e, "web");
    assert_eq!(v.state, State::Down, "held out");
    assert!(v.flapping_since.is_some());
    assert!(v.reason.starts_with("Flapping: "), "{}", v.reason);
    e.publish();
    let summary = e.snap_tx.borrow().summary();
    assert_eq!(summary, "1 service: 1 down; held out for flapping: web");
    let release = e.next_expiry().expect("a timer for the hold");
    assert_eq!(
        release,
        tokio::time::Instant::now() + Duration::from_secs(30)
    );
    tokio::time::advance(Duration::from_secs(20)).await;
    check_done(&mut e, "web", Exit::Code(1));
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(
        view(&e, "web").state,
        State::Down,
        "still changing: still held"
    );
    tokio::time::advance(Duration::from_secs(29)).await;
    e.expire();
    assert_eq!(view(&e, "web").state, State::Down);
    tokio::time::advance(Duration::from_secs(1)).await;
    e.expire();
    let v = view(&e, "web");
    assert_eq!(
        (v.state, v.flapping_since),
        (State::Up, None),
        "stable for 30s"
    );
}

#[tokio::test(start_paused = true)]
async fn reasons_say_why() {
    let b = Bench::new(CHECKED);
    let mut e = b.engine();
    let reason = |e: &Engine| view(e, "web").reason.clone();
    assert_eq!(reason(&e), "Starting: no check result yet");
    check_done(&mut e, "web", Exit::TimedOut);
    assert_eq!(reason(&e), "Check failed: timed out after 2s");
    check_done(&mut e, "web", Exit::Code(0));
    check_done(&mut e, "web", Exit::Code(3));
    check_done(&mut e, "web", Exit::Code(3));
    assert_eq!(reason(&e), "Check failed: exit 3");
    op(&mut e, handle::Op::SetChecksStopped("web".into(), true));
    assert_eq!(reason(&e), "OK: check stopped by an operator");
    op(&mut e, handle::Op::SetChecksStopped("web".into(), false));
    op(
        &mut e,
        handle::Op::Pause(Some("web".into()), String::new(), None, false),
    );
    assert_eq!(reason(&e), "Paused by root", "no reason given: who");
    op(
        &mut e,
        handle::Op::Disable("web".into(), "deploy v2".into(), None, false),
    );
    assert_eq!(reason(&e), "Disabled: deploy v2", "disabled beats paused");
    assert_eq!(view(&e, "web").http_status, 503);

    let b = Bench::new("[plain]\nport={port}\nbind=127.0.0.1\n");
    let e = b.engine();
    assert_eq!(view(&e, "plain").reason, "OK: no check configured");
}

#[tokio::test(start_paused = true)]
async fn enable_while_paused_stays_paused_and_a_second_disable_says_what_it_replaced() {
    let b = Bench::new("[web]\nport={port}\nbind=127.0.0.1\npausable=yes\n");
    let mut e = b.engine();
    op(
        &mut e,
        handle::Op::Pause(Some("web".into()), "db".into(), None, false),
    );
    let first = op(
        &mut e,
        handle::Op::Disable("web".into(), "deploy v2".into(), None, false),
    );
    assert!(matches!(first, Outcome::Disabled { replaced: None, .. }));
    let d = handle::Op::Disable(
        "web".into(),
        "deploy v3".into(),
        Some(Duration::from_secs(60)),
        false,
    );
    match op(&mut e, d) {
        Outcome::Disabled {
            replaced: Some(r),
            until: Some(_),
            ..
        } => assert_eq!(
            (r.reason.as_str(), r.by.as_str(), r.until),
            ("deploy v2", "root", 0)
        ),
        other => panic!("{other:?}"),
    }
    let out = op(&mut e, handle::Op::Enable("web".into()));
    assert_eq!(
        out,
        Outcome::Enabled {
            service: "web".into(),
            was_disabled: true
        }
    );
    assert_eq!(view(&e, "web").state, State::Paused, "the pause stays");
    let again = op(&mut e, handle::Op::Enable("web".into()));
    assert!(matches!(
        again,
        Outcome::Enabled {
            was_disabled: false,
            ..
        }
    ));
    let paused = op(&mut e, handle::Op::Pause(None, "again".into(), None, false));
    match paused {
        Outcome::Paused {
            services, replaced, ..
        } => {
            assert_eq!(services, ["web"]);
            assert_eq!(replaced.len(), 1);
            assert_eq!(replaced[0].1.reason, "db");
        }
        other => panic!("{other:?}"),
    }
    op(&mut e, handle::Op::Resume(None));
    assert_eq!(view(&e, "web").state, State::Up);
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_manual_state_and_results_unless_the_command_changed() {
    let mut b = Bench::new(CHECKED);
    let mut e = b.engine();
    check_done(&mut e, "web", Exit::Code(0));
    op(
        &mut e,
        handle::Op::Disable("web".into(), "deploy".into(), None, false),
    );
    let runner = e.services["web"].runner.as_ref().unwrap().id;

    // Timing only: the result and the decision stay; the runner restarts with the new timing.
    b.rewrite(
        "check_script_interval=10\ncheck_timeout=2\n",
        "check_script_interval=30\ncheck_timeout=5\n",
    );
    let Outcome::Reloaded(r) = op(&mut e, handle::Op::Reload) else {
        panic!()
    };
    assert_eq!((r.kept, r.check_changed.len()), (1, 0));
    let svc = &e.services["web"];
    assert_eq!(svc.facts.health.healthy, Some(true), "health kept");
    assert!(svc.facts.last.is_some(), "result kept");
    assert_eq!(svc.view.state, State::Disabled, "manual state kept");
    assert_ne!(svc.runner.as_ref().unwrap().id, runner, "runner restarted");
    op(&mut e, handle::Op::Enable("web".into()));
    assert_eq!(view(&e, "web").state, State::Up, "no flap to starting");

    // Another command: its result is unknown.
    b.rewrite("check_script=/bin/true", "check_script=/bin/true --deep");
    let Outcome::Reloaded(r) = op(&mut e, handle::Op::Reload) else {
        panic!()
    };
    assert_eq!(r.check_changed, ["web"]);
    assert_eq!(view(&e, "web").state, State::Starting);

    // [general] is not moved live: the reload names what waits for a restart.
    b.general = b.general.replace("dbus=off", "dbus=session\nlog_level=3");
    b.write();
    let Outcome::Reloaded(r) = op(&mut e, handle::Op::Reload) else {
        panic!()
    };
    assert_eq!(r.pending_restart, ["log_level", "dbus"]);

    // A bad file changes nothing.
    std::fs::write(b.file(), "[web\n").unwrap();
    let err = e.op(handle::Op::Reload, "root").unwrap_err();
    assert!(
        matches!(err, EngineError::Reload(ReloadRefused::Config(_))),
        "{err}"
    );
    assert!(e.services.contains_key("web"));
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_cannot_bind_changes_nothing() {
    let mut b = Bench::new("[web]\nport={port}\nbind=127.0.0.1\n");
    let mut e = b.engine();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    b.services
        .push_str(&format!("[db]\nport={port}\nbind=127.0.0.1\n"));
    b.write();
    let err = e.op(handle::Op::Reload, "root").unwrap_err();
    match err {
        EngineError::Reload(ReloadRefused::Listen { service, .. }) => assert_eq!(service, "db"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.services.keys().collect::<Vec<_>>(), ["web"]);
}

fn saved_with(check: &[&str], ended_ago: Duration, now: Micros) -> Saved {
    let mut s = Saved {
        version: 1,
        ..Saved::default()
    };
    let age = ended_ago.as_micros() as u64;
    s.services.insert(
        "web".into(),
        SavedService {
            admin: Admin {
                disabled: Some(crate::model::Override::new(
                    "kept",
                    "alice",
                    now - age,
                    None,
                )),
                ..Admin::default()
            },
            health: HealthTracker {
                healthy: Some(true),
                passes: 1,
                failures: 0,
                warning: false,
            },
            last: Some(CheckResult {
                exit: Exit::Code(0),
                time: now - age - 1000,
                duration_us: 1000,
                output: String::new(),
                first_line: String::new(),
            }),
            check: Some(check.iter().map(|s| s.to_string()).collect()),
        },
    );
    s
}

#[tokio::test(start_paused = true)]
async fn a_restart_trusts_only_a_fresh_result_of_the_same_command() {
    let now = micros(SystemTime::now());
    // interval 10 s + timeout 2 s (+ 5 s for the restart itself): a result that ended 5 s
    // or 15 s ago is fresh, 60 s ago stale.
    let cases = [
        (&["/bin/true"][..], Duration::from_secs(5), Some(true)),
        (&["/bin/true"][..], Duration::from_secs(15), Some(true)),
        (&["/bin/true"][..], Duration::from_secs(60), None),
        (&["/bin/false"][..], Duration::from_secs(5), None),
    ];
    for (check, ago, healthy) in cases {
        let b = Bench::new(CHECKED);
        b.save_state(&saved_with(check, ago, now));
        let mut e = b.engine();
        let svc = &e.services["web"];
        assert_eq!(svc.facts.health.healthy, healthy, "{check:?} {ago:?}");
        assert_eq!(svc.facts.last.is_some(), healthy.is_some());
        assert_eq!(
            svc.view.state,
            State::Disabled,
            "manual state restored always"
        );
        assert_eq!(svc.facts.admin.disabled.as_ref().unwrap().by, "alice");
        op(&mut e, handle::Op::Enable("web".into()));
        let want = if healthy.is_some() {
            State::Up
        } else {
            State::Starting
        };
        assert_eq!(view(&e, "web").state, want);
    }
}

#[tokio::test(start_paused = true)]
async fn start_paused_applies_only_without_saved_state() {
    let services = "[a]\nport={port}\nbind=127.0.0.1\npausable=yes\nstart_paused=yes\n";
    let b = Bench::new(services);
    let e = b.engine();
    assert_eq!(view(&e, "a").state, State::Paused);
    assert_eq!(view(&e, "a").reason, "Paused: start_paused");
    // Its listeners close once their aborted tasks are dropped, at the next turn.
    drop(e);
    tokio::task::yield_now().await;
    let mut saved = Saved {
        version: 1,
        ..Saved::default()
    };
    saved.services.insert("a".into(), SavedService::default());
    b.save_state(&saved);
    let e = b.engine();
    assert_eq!(
        view(&e, "a").state,
        State::Up,
        "an operator's run beats start_paused"
    );
}

/// The engine's own clock follows tokio's: what the paused clock makes possible here.
#[tokio::test(start_paused = true)]
async fn the_engine_clock_follows_tokio_time() {
    let c = Clock::start();
    let t0 = c.now();
    tokio::time::advance(Duration::from_secs(90)).await;
    assert_eq!(c.now() - t0, 90_000_000);
    assert_eq!(
        c.instant_at(t0 + 10_000_000),
        c.mono0 + Duration::from_secs(10)
    );
}

/// Nothing process-wide: two engines in one process keep their own state, probe
/// connections and check processes.
#[tokio::test(start_paused = true)]
async fn two_engines_run_side_by_side() {
    let (a, b) = (
        Bench::new("[web]\nport={port}\nbind=127.0.0.1\n"),
        Bench::new("[web]\nport={port}\nbind=127.0.0.1\n"),
    );
    let (ha, _ta) = Engine::start(Config::load(&a.file()).unwrap(), a.parts()).unwrap();
    let (hb, _tb) = Engine::start(Config::load(&b.file()).unwrap(), b.parts()).unwrap();
    ha.disable("web", "only here", None, "root").await.unwrap();
    assert_eq!(ha.snapshot().services["web"].state, State::Disabled);
    assert_eq!(hb.snapshot().services["web"].state, State::Up);
    assert_eq!(hb.ping().await, Ok(Outcome::Pong));
}

/// A check killed by SIGTERM is held back for [`STOP_SIGNAL_SETTLE`]: counted if the daemon is
/// still running then (someone else killed it), dropped if the daemon is stopping (the stop of
/// the whole service killed it).
#[tokio::test(start_paused = true)]
async fn a_check_killed_by_sigterm_counts_only_if_the_daemon_still_runs_a_moment_later() {
    let b = Bench::new(CHECKED);
    let (mut e, mut inbox) = Engine::new(Config::load(&b.file()).unwrap(), b.parts()).unwrap();
    check_done(&mut e, "web", Exit::Code(0));
    check_done(&mut e, "web", Exit::Signal(libc::SIGTERM));
    assert_eq!(view(&e, "web").checks_count, 1, "held back");
    let later = held_back(&mut inbox).await;
    e.on_check_done(later);
    assert_eq!(
        view(&e, "web").checks_count,
        2,
        "the daemon still runs: it counts"
    );
    assert_eq!(view(&e, "web").state, State::Up, "1 failure of fall=2");

    check_done(&mut e, "web", Exit::Signal(libc::SIGTERM));
    let later = held_back(&mut inbox).await;
    e.shutdown.cancel();
    e.on_check_done(later);
    assert_eq!(
        view(&e, "web").checks_count,
        2,
        "the daemon is stopping: dropped"
    );
}

/// The held-back result the engine hands itself after the settle time. The service's real
/// runner also runs `/bin/true` meanwhile; its results land in the same inbox, first when the
/// machine is busy, and are skipped here.
async fn held_back(inbox: &mut Inbox) -> CheckDone {
    loop {
        let done = inbox
            .done
            .recv()
            .await
            .expect("handed back after the settle time");
        if done.settled {
            return done;
        }
    }
}

/// A probe from a HAProxy with send-state at `ip`, folded into the service's table as the
/// observer would.
fn hap_probe(e: &Engine, name: &str, ip: [u8; 4], header: &str) {
    use crate::probe_stats::{Answer, ProbeKind, Tap};
    let stats = e.services[name].facts.probes.clone();
    let (tx, mut rx) = mpsc::channel(1);
    Tap::new(stats.clone(), tx).record(
        std::net::IpAddr::from(ip),
        ProbeKind::Http,
        Answer::Http(200),
        Some(State::Up),
        true,
        Some(header.as_bytes()),
    );
    stats.observe(&rx.try_recv().unwrap());
}

fn guarded(e: &mut Engine, op: handle::Op) -> String {
    match e.op(op, "root") {
        Err(EngineError::CapacityGuard(s)) => s.to_string(),
        other => panic!("not refused by the guard: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_capacity_guard_refuses_the_last_server_until_forced_and_forgets_a_silent_balancer() {
    let b = Bench::new("[web]\nport={port}\nbind=127.0.0.1\n");
    let mut e = b.engine();
    // Without send-state: no guard.
    let disable = |force| handle::Op::Disable("web".into(), "deploy".into(), None, force);
    op(&mut e, disable(false));
    op(&mut e, handle::Op::Enable("web".into()));

    // Two load balancers; lb2 has this server as its last usable one.
    hap_probe(
        &e,
        "web",
        [10, 0, 0, 1],
        "UP; name=be/web1; node=lb1; weight=1/2; scur=0/0",
    );
    hap_probe(
        &e,
        "web",
        [10, 0, 0, 2],
        "UP; name=be/web1; node=lb2; weight=1/1; scur=3/3",
    );
    let why = guarded(&mut e, disable(false));
    assert!(
        why.contains("HAProxy lb2 (10.0.0.2) backend be would keep 0 of 1 weight (0%)"),
        "{why}"
    );
    assert!(!why.contains("lb1"), "lb1 keeps half: {why}");
    assert_eq!(
        view(&e, "web").state,
        State::Up,
        "a refusal changes nothing"
    );

    // --force takes it out and says what it overrode.
    let Outcome::Disabled { forced, .. } = op(&mut e, disable(true)) else {
        panic!()
    };
    assert_eq!(forced.len(), 1);
    assert_eq!(forced[0].node, "lb2");
    assert_eq!(view(&e, "web").state, State::Disabled);
    // Already out: a second disable (a new reason) takes nothing away.
    op(&mut e, disable(false));
    op(&mut e, handle::Op::Enable("web".into()));

    // A minute later without another probe, neither balancer counts: no guard.
    tokio::time::advance(crate::wait::RECENT + Duration::from_secs(1)).await;
    op(&mut e, disable(false));
}

#[tokio::test(start_paused = true)]
async fn pause_of_every_pausable_service_is_guarded_as_one_and_all_or_nothing() {
    let b = Bench::new(
        "[a]\nport={port}\nbind=127.0.0.1\npausable=yes\nmin_capacity=50\n\
         [b]\nport={port2}\nbind=127.0.0.1\npausable=yes\n",
    );
    let mut e = b.engine();
    // One backend of three servers, two of them here: each alone keeps 2/3, both 1/3.
    hap_probe(
        &e,
        "a",
        [10, 0, 0, 1],
        "UP; name=be/a; node=lb1; weight=1/3",
    );
    hap_probe(
        &e,
        "b",
        [10, 0, 0, 1],
        "UP; name=be/b; node=lb1; weight=1/3",
    );
    op(
        &mut e,
        handle::Op::Pause(Some("a".into()), String::new(), None, false),
    );
    op(&mut e, handle::Op::Resume(None));
    let why = guarded(&mut e, handle::Op::Pause(None, String::new(), None, false));
    assert!(why.contains("taking out a, b: HAProxy"), "{why}");
    assert!(
        why.contains("keep 1 of 3 weight (33%), below min_capacity 50%"),
        "{why}"
    );
    assert_eq!(view(&e, "a").state, State::Up, "nothing paused");
    assert_eq!(view(&e, "b").state, State::Up, "nothing paused");
    op(&mut e, handle::Op::Pause(None, String::new(), None, true));
    assert_eq!(view(&e, "b").state, State::Paused);
}

/// The engine with its loop running, and the door its runners report through.
fn running(b: &Bench) -> (Handle, mpsc::UnboundedSender<CheckDone>, u64) {
    let cfg = Config::load(&b.file()).unwrap();
    let (engine, inbox) = Engine::new(cfg, b.parts()).unwrap();
    let done_tx = engine.done_tx.clone();
    let runner = engine.services["web"].runner.as_ref().map_or(0, |r| r.id);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(engine.run(rx, inbox.done, inbox.silence, inbox.saved));
    let h = Handle {
        tx,
        snap: inbox.snap,
    };
    (h, done_tx, runner)
}

fn passed(runner: u64) -> CheckDone {
    CheckDone {
        service: "web".into(),
        runner,
        result: CheckResult {
            exit: Exit::Code(0),
            time: micros(SystemTime::now()),
            duration_us: 1000,
            output: String::new(),
            first_line: String::new(),
        },
        settled: false,
    }
}

/// Makes the state file unwritable, as a full disk would: a file stands where `state_dir`
/// must be. Removing that file makes it writable again.
fn block_state(b: &Bench) -> PathBuf {
    let state = b.dir.path().join("state");
    if state.is_dir() {
        std::fs::remove_dir_all(&state).unwrap();
    }
    std::fs::write(&state, b"").unwrap();
    state
}

fn saved_health(b: &Bench) -> Option<bool> {
    let saved = crate::state::Store::new(&b.dir.path().join("state")).load();
    saved.services.get("web").and_then(|s| s.health.healthy)
}

#[tokio::test(start_paused = true)]
async fn the_first_result_after_a_start_is_saved_at_once() {
    let b = Bench::new(CHECKED);
    let (h, done_tx, runner) = running(&b);
    done_tx.send(passed(runner)).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.snapshot().services["web"].state, State::Up);
    assert_eq!(
        saved_health(&b),
        Some(true),
        "a kill -9 now must find the passing result"
    );
}

#[tokio::test(start_paused = true)]
async fn a_change_that_cannot_be_saved_says_so_and_is_saved_once_it_can() {
    let b = Bench::new("[web]\nport={port}\nbind=127.0.0.1\n");
    let blocker = block_state(&b);
    let (h, _done, _) = running(&b);
    let err = h.disable("web", "deploy", None, "root").await.unwrap_err();
    let EngineError::NotSaved { outcome, failure } = &err else {
        panic!("{err:?}");
    };
    assert!(matches!(**outcome, Outcome::Disabled { .. }), "{outcome:?}");
    assert!(err.to_string().contains("NOT SAVED"), "{err}");
    assert!(failure.path.ends_with("state/state.json"), "{failure:?}");
    let snap = h.snapshot();
    assert_eq!(snap.services["web"].state, State::Disabled, "in effect");
    assert!(snap.unsaved.is_some());
    assert!(snap.summary().contains("NOT SAVED"), "{}", snap.summary());
    assert!(crate::status::json(&snap, None)
        .unwrap()
        .contains("\"state_saved\": false"));
    assert!(crate::metrics::render(&snap).contains("psentinel_state_saved 0"));

    // Space again: saved without another command, and the snapshot says so.
    std::fs::remove_file(&blocker).unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(h.snapshot().unsaved.is_none());
    let saved = crate::state::Store::new(&blocker).load();
    assert_eq!(
        saved.services["web"]
            .admin
            .disabled
            .as_ref()
            .unwrap()
            .reason,
        "deploy"
    );
}

const FOLLOWING: &str = "[web]\nport={port}\nbind=127.0.0.1\ncheck_script=/bin/true\n\
     check_script_interval=10\nunit=app.service\n";

fn report(active: &str, sub: &str) -> UnitReport {
    UnitReport {
        unit: "app.service".into(),
        active: active.into(),
        sub: sub.into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_unit_not_active_takes_its_service_out_and_back() {
    let mut b = Bench::new(FOLLOWING);
    let mut e = b.engine();
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(
        view(&e, "web").state,
        State::Up,
        "unknown unit: checks decide"
    );
    e.on_unit(report("active", "running"));
    assert_eq!(view(&e, "web").state, State::Up);
    e.on_unit(report("failed", "failed"));
    let v = view(&e, "web");
    assert_eq!((v.state, v.http_status), (State::Down, 500));
    assert_eq!(v.reason, "Unit app.service is failed (failed)");
    assert_eq!(crate::status::unit_state(v), "failed");
    e.on_unit(report("active", "running"));
    assert_eq!(
        view(&e, "web").state,
        State::Starting,
        "back: out until a check of the new process passes"
    );
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(view(&e, "web").state, State::Up);
    e.on_unit(report("reloading", "reload"));
    assert_eq!(view(&e, "web").state, State::Up, "a reload keeps serving");

    // The drain unit's stop, then systemd's states, then its start.
    let out = op(&mut e, handle::Op::UnitStopping("app.service".into()));
    assert_eq!(
        out,
        Outcome::UnitStopping {
            unit: "app.service".into(),
            services: vec!["web".into()]
        }
    );
    assert_eq!(
        view(&e, "web").reason,
        "Unit app.service is stopping: draining"
    );
    e.on_unit(report("active", "running"));
    assert_eq!(view(&e, "web").state, State::Down, "still announced");
    e.on_unit(report("deactivating", "stop-sigterm"));
    e.on_unit(report("inactive", "dead"));
    assert_eq!(view(&e, "web").state, State::Down);
    e.on_unit(report("active", "running"));
    assert_eq!(view(&e, "web").state, State::Starting);
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(view(&e, "web").state, State::Up);
    // unit_started after a stop systemd's signals never showed (no bus, coalesced).
    op(&mut e, handle::Op::UnitStopping("app.service".into()));
    op(&mut e, handle::Op::UnitStarted("app.service".into()));
    assert_eq!(
        view(&e, "web").state,
        State::Starting,
        "unit_started lifts it"
    );
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(view(&e, "web").state, State::Up);
    // unit_started alone (nothing announced: the bus showed the restart, or there is no bus
    // and no drain unit) keeps what the check said, and checks again at once and until it
    // passes: `unit_started --wait` waits for that.
    assert_eq!(e.services["web"].recheck_until, None, "passed: no re-runs");
    op(&mut e, handle::Op::UnitStarted("app.service".into()));
    assert_eq!(view(&e, "web").state, State::Up);
    assert!(e.services["web"].recheck_until.is_some(), "re-runs");
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(e.services["web"].recheck_until, None, "passed: re-runs end");

    // An operator's disable stays through all of it.
    op(
        &mut e,
        handle::Op::Disable("web".into(), "deploy".into(), None, false),
    );
    op(&mut e, handle::Op::UnitStopping("app.service".into()));
    op(&mut e, handle::Op::UnitStarted("app.service".into()));
    assert_eq!(view(&e, "web").state, State::Disabled);
    op(&mut e, handle::Op::Enable("web".into()));
    check_done(&mut e, "web", Exit::Code(0));
    assert_eq!(view(&e, "web").state, State::Up);

    let err = e
        .op(handle::Op::UnitStopping("other.service".into()), "root")
        .unwrap_err();
    assert_eq!(
        err,
        EngineError::Refused(Refusal::UnknownUnit("other.service".into()))
    );

    // A reload that drops unit= forgets the unit.
    e.on_unit(report("failed", "failed"));
    assert_eq!(view(&e, "web").state, State::Down);
    b.rewrite("unit=app.service\n", "");
    op(&mut e, handle::Op::Reload);
    assert_eq!(view(&e, "web").state, State::Up);
    assert_eq!(crate::status::unit_state(view(&e, "web")), "");
}

/// The state file is written from the services' views: the same content as a `Saved` built
/// from the engine's own facts, and it loads back as that.
#[tokio::test(start_paused = true)]
async fn the_state_written_from_views_is_the_engines_facts() {
    let b = Bench::new(&format!(
        "{CHECKED}[db]\nport={{port2}}\nbind=127.0.0.1\npausable=yes\n"
    ));
    let mut e = b.engine();
    check_said(
        &mut e,
        "web",
        Exit::Code(1),
        "DISK CRITICAL\nsecond \"line\"",
    );
    op(
        &mut e,
        handle::Op::Disable("db".into(), "deploy v2".into(), None, false),
    );
    op(
        &mut e,
        handle::Op::Pause(Some("web".into()), "db".into(), None, false),
    );
    let facts = Saved {
        version: 1,
        services: e
            .services
            .iter()
            .map(|(n, s)| (n.clone(), s.saved()))
            .collect(),
    };
    assert!(facts.services["web"].last.is_some() && facts.services["db"].admin.disabled.is_some());
    assert_eq!(
        serde_json::to_value(e.saved()).unwrap(),
        serde_json::to_value(&facts).unwrap()
    );
    assert!(e.persist());
    assert_eq!(
        crate::state::Store::new(&b.dir.path().join("state")).load(),
        facts
    );
}

/// Results that come together are written together: a write starts at most every
/// `SAVE_SPACING`, the one that waits carries the latest state, and an isolated result is
/// written at once.
#[tokio::test(start_paused = true)]
async fn a_burst_of_results_is_written_at_most_every_spacing() {
    let b = Bench::new(CHECKED);
    let (h, done_tx, runner) = running(&b);
    done_tx.send(passed(runner)).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(saved_health(&b), Some(true), "the first result: at once");
    // fall=2: the second failure changes the health, 20 ms after the last write began.
    for _ in 0..2 {
        let mut failed = passed(runner);
        failed.result.exit = Exit::Code(1);
        done_tx.send(failed).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(h.snapshot().services["web"].state, State::Down);
    assert_eq!(
        saved_health(&b),
        Some(true),
        "the next write waits for its turn"
    );
    tokio::time::sleep(save::SAVE_SPACING).await;
    assert_eq!(saved_health(&b), Some(false), "written at its turn");
    // Long after: a change is written at once again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for _ in 0..2 {
        done_tx.send(passed(runner)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(saved_health(&b), Some(true));
}

/// A state file that cannot be written is tried again after 250 ms, then twice as long each
/// time (up to 5 s); the failure keeps the time it began. Once saved, the next failure is
/// tried again after 250 ms, not after the last wait.
#[tokio::test(start_paused = true)]
async fn a_failing_state_file_is_retried_ever_less_often_and_the_backoff_starts_over_once_saved() {
    let b = Bench::new("[web]\nport={port}\nbind=127.0.0.1\n");
    let state = block_state(&b);
    let (h, _done, _) = running(&b);
    let start = tokio::time::Instant::now();
    h.disable("web", "deploy", None, "root").await.unwrap_err();
    let since = h.snapshot().unsaved.clone().expect("not saved").since;
    // Tried again at 0.25 and 0.75 s; a change at 1 s fails too and the wait (1 s) starts
    // over from there: tried at 2 s, then 2 s later.
    tokio::time::sleep_until(start + Duration::from_secs(1)).await;
    let err = h.disable("web", "v2", None, "root").await.unwrap_err();
    let EngineError::NotSaved { failure, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(failure.since, since, "failing since the first failure");
    tokio::time::sleep_until(start + Duration::from_millis(2500)).await;
    std::fs::remove_file(&state).unwrap();
    tokio::time::sleep_until(start + Duration::from_millis(3900)).await;
    assert!(h.snapshot().unsaved.is_some(), "not tried since 2 s");
    tokio::time::sleep_until(start + Duration::from_millis(4100)).await;
    assert!(h.snapshot().unsaved.is_none(), "tried at 4 s");

    block_state(&b);
    h.enable("web", "root").await.unwrap_err();
    std::fs::remove_file(&state).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.snapshot().unsaved.is_none(), "the backoff started over");
}

/// Results recorded while a background write is under way are written by the next one,
/// started when the first one's verdict is back.
#[tokio::test(start_paused = true)]
async fn results_that_come_during_a_write_are_written_when_it_is_over() {
    let b = Bench::new(CHECKED);
    let (mut e, mut inbox) = Engine::new(Config::load(&b.file()).unwrap(), b.parts()).unwrap();
    check_done(&mut e, "web", Exit::Code(0));
    e.persist_soon();
    tokio::time::advance(save::SAVE_SPACING).await;
    check_done(&mut e, "web", Exit::Code(1));
    check_done(&mut e, "web", Exit::Code(1));
    assert_eq!(view(&e, "web").state, State::Down);
    e.persist_soon();
    let first = inbox.saved.recv().await.unwrap();
    assert_eq!(
        saved_health(&b),
        Some(true),
        "the first write: the first result"
    );
    e.on_saved(first);
    let next = tokio::time::timeout(Duration::from_secs(1), inbox.saved.recv())
        .await
        .expect("the next write starts when the first is over")
        .unwrap();
    e.on_saved(next);
    assert_eq!(saved_health(&b), Some(false));
}

/// A background write that fails shows in the snapshot at once; one whose verdict comes
/// after a newer write succeeded is not taken.
#[tokio::test(start_paused = true)]
async fn a_failed_background_write_shows_unless_a_newer_write_succeeded() {
    let b = Bench::new(CHECKED);
    let (mut e, mut inbox) = Engine::new(Config::load(&b.file()).unwrap(), b.parts()).unwrap();
    let state = block_state(&b);
    check_done(&mut e, "web", Exit::Code(0));
    e.persist_soon();
    let failed = inbox.saved.recv().await.unwrap();
    std::fs::remove_file(&state).unwrap();
    assert!(e.persist(), "a newer write");
    e.on_saved(failed);
    assert!(e.snap_tx.borrow().unsaved.is_none(), "the older failure");

    block_state(&b);
    tokio::time::advance(save::SAVE_SPACING).await;
    check_done(&mut e, "web", Exit::Code(0));
    e.persist_soon();
    let failed = inbox.saved.recv().await.unwrap();
    e.on_saved(failed);
    assert!(e.snap_tx.borrow().unsaved.is_some(), "shown at once");
}

/// A result that changes no health is written within `HEALTH_FLUSH_DELAY`, not at once.
#[tokio::test(start_paused = true)]
async fn a_result_that_changes_nothing_is_written_within_the_flush_delay() {
    // The runner's own check never ends while the test runs: only the results sent here count.
    let b = Bench::new(
        "[web]\nport={port}\nbind=127.0.0.1\ncheck_script=/bin/sleep 1000\n\
         check_script_interval=600\ncheck_timeout=300\n",
    );
    let (_h, done_tx, runner) = running(&b);
    let saved_output = || {
        let saved = crate::state::Store::new(&b.dir.path().join("state")).load();
        saved.services["web"]
            .last
            .as_ref()
            .map(|l| l.output.clone())
    };
    done_tx.send(passed(runner)).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(saved_output().as_deref(), Some(""), "the first: at once");
    let mut later = passed(runner);
    later.result.output = "later".into();
    done_tx.send(later).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(saved_output().as_deref(), Some(""), "not at once");
    tokio::time::sleep(HEALTH_FLUSH_DELAY).await;
    assert_eq!(saved_output().as_deref(), Some("later"));
}
