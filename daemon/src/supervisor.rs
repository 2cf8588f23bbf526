//! `emcee run`: the stage and the control plane as two child processes, supervised by the
//! rules systemd applies to their units on the appliance, so a developer's machine behaves
//! like the box:
//! - a child that crashes is started again (the control plane resumes from its database, the
//!   stage gets the cue in flight again), at most [`MAX_RESTARTS`] times;
//! - each child reports through its own notify socket (`NOTIFY_SOCKET`, `WATCHDOG_USEC`): one
//!   that stops pinging its watchdog — a stage whose media clock is wedged — is killed and
//!   started again;
//! - SIGTERM, SIGINT or SIGHUP to `emcee run` is passed on as SIGTERM to both; what has not
//!   ended after [`STOP_PATIENCE`] is killed; and the children die with `emcee run` even when
//!   it is killed outright (they ask for it: [`emcee_protocol::process`]).

use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use emcee_protocol::process::SUPERVISOR_ENV;
use emcee_protocol::shutdown::StopSignals;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::EXIT_CONFIG;

/// Restarts allowed per process before `emcee run` gives up (systemd's StartLimitBurst).
pub const MAX_RESTARTS: u32 = 20;
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How long both children have to end after a stop signal, together.
pub const STOP_PATIENCE: Duration = Duration::from_secs(8);
/// The stage's watchdog (its unit's `WatchdogSec`): a media clock that has not ticked for this
/// long gets the stage replaced.
pub const STAGE_WATCHDOG: Duration = Duration::from_secs(10);
/// The control plane's watchdog (its unit's `WatchdogSec`).
pub const CONTROL_WATCHDOG: Duration = Duration::from_secs(30);

/// What to run.
pub struct Plan {
    pub config_path: PathBuf,
    /// `--output` URLs that replace the configured outputs.
    pub outputs: Vec<String>,
    /// When the show ends at the latest (`--run-for`).
    pub deadline: Option<Instant>,
    /// Where `emcee-stage` and `emceed` are.
    pub bin_dir: Option<PathBuf>,
}

impl Plan {
    fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.as_ref().map(|d| d.join(name)).filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from(name))
    }

    fn command(&self, name: &str, notify: &Path, watchdog: Duration) -> Command {
        let mut command = Command::new(self.program(name));
        command
            .arg("--config")
            .arg(&self.config_path)
            .env(SUPERVISOR_ENV, std::process::id().to_string())
            .env("NOTIFY_SOCKET", notify)
            .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
            .kill_on_drop(true);
        command
    }

    fn stage(&self, notify: &Path) -> std::io::Result<Child> {
        self.command("emcee-stage", notify, STAGE_WATCHDOG).spawn()
    }

    fn control(&self, notify: &Path) -> std::io::Result<Child> {
        let mut control = self.command("emceed", notify, CONTROL_WATCHDOG);
        for url in &self.outputs {
            control.arg("--output").arg(url);
        }
        if let Some(deadline) = self.deadline {
            // A restarted control plane gets what is left of the run time.
            let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64().max(0.1);
            control.arg("--run-for").arg(format!("{left:.3}"));
        }
        control.spawn()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot start {name}: {source}")]
    Spawn { name: &'static str, source: std::io::Error },
    #[error("cannot make the notify sockets in {dir}: {source}")]
    Notify { dir: PathBuf, source: std::io::Error },
}

/// One supervised child: the process, its notify socket, the last sign of life.
struct Supervised {
    name: &'static str,
    child: Option<Child>,
    notify: UnixDatagram,
    notify_path: PathBuf,
    watchdog: Duration,
    last_sign: Instant,
    restarts: u32,
}

impl Supervised {
    fn new(name: &'static str, dir: &Path, watchdog: Duration) -> Result<Self, SuperviseError> {
        let notify_path = dir.join(format!("{name}.notify"));
        let failed = |source| SuperviseError::Notify { dir: dir.to_path_buf(), source };
        let _ = std::fs::remove_file(&notify_path);
        let std_socket = StdDatagram::bind(&notify_path).map_err(failed)?;
        std_socket.set_nonblocking(true).map_err(failed)?;
        let notify = UnixDatagram::from_std(std_socket).map_err(failed)?;
        Ok(Self { name, child: None, notify, notify_path, watchdog, last_sign: Instant::now(), restarts: 0 })
    }

    fn started(&mut self, child: std::io::Result<Child>) -> Result<(), SuperviseError> {
        self.child = Some(child.map_err(|source| SuperviseError::Spawn { name: self.name, source })?);
        self.last_sign = Instant::now();
        Ok(())
    }

    /// When the watchdog fires if nothing is heard first.
    fn watchdog_due(&self) -> Instant {
        if self.child.is_some() {
            self.last_sign + self.watchdog
        } else {
            Instant::now() + Duration::from_secs(3600)
        }
    }

    /// Starts the child again after it ended with `status`, unless it has used up its restarts
    /// (then false).
    async fn restart(
        &mut self,
        spawn: impl FnOnce(&Path) -> std::io::Result<Child>,
        status: &std::io::Result<ExitStatus>,
    ) -> bool {
        self.restarts += 1;
        eprintln!("emcee: {} ended ({status:?}); restart {}", self.name, self.restarts);
        if self.restarts > MAX_RESTARTS {
            return false;
        }
        tokio::time::sleep(RESTART_DELAY).await;
        let child = spawn(&self.notify_path);
        self.started(child).is_ok()
    }

    /// Kills the child (it stopped pinging); its end is then seen like a crash.
    fn kill(&mut self) {
        eprintln!("emcee: {} sent no watchdog ping for {:?}; killing it", self.name, self.watchdog);
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        self.last_sign = Instant::now();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.notify_path);
    }
}

/// Waits for `child` to end (never, when there is none).
async fn ended(child: &mut Option<Child>) -> std::io::Result<ExitStatus> {
    match child.as_mut() {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

/// Waits for a notification on `socket`; every one is a sign of life.
async fn heard(socket: &UnixDatagram) {
    let mut buf = [0u8; 512];
    while socket.recv(&mut buf).await.is_err() {}
}

/// Sends SIGTERM to `child` (so it closes its streams and database).
fn terminate(child: &Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// Runs both children until the show ends, a stop signal comes or a child gives up; returns
/// the control plane's exit status when it decided the end.
pub async fn supervise(plan: Plan) -> Result<Option<ExitStatus>, SuperviseError> {
    let dir = std::env::temp_dir().join(format!("emcee-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| SuperviseError::Notify { dir: dir.clone(), source })?;
    let result = Supervisor::start(&plan, &dir)?.run(&plan).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result)
}

struct Supervisor {
    stage: Supervised,
    control: Supervised,
    signals: StopSignals,
    /// Set once the stage has closed the streams: the show is over, nothing is restarted.
    show_over: bool,
}

impl Supervisor {
    fn start(plan: &Plan, dir: &Path) -> Result<Self, SuperviseError> {
        let mut stage = Supervised::new("emcee-stage", dir, STAGE_WATCHDOG)?;
        let mut control = Supervised::new("emceed", dir, CONTROL_WATCHDOG)?;
        stage.started(plan.stage(&stage.notify_path))?;
        control.started(plan.control(&control.notify_path))?;
        Ok(Self { stage, control, signals: StopSignals::new(), show_over: false })
    }

    async fn run(mut self, plan: &Plan) -> Option<ExitStatus> {
        let outcome = loop {
            let (stage_due, control_due) = (self.stage.watchdog_due(), self.control.watchdog_due());
            tokio::select! {
                status = ended(&mut self.control.child) => {
                    self.control.child = None;
                    match status {
                        Ok(s) if s.success() || s.code() == Some(EXIT_CONFIG) => break Some(s),
                        other => {
                            let out_of_time = plan.deadline.is_some_and(|d| d <= Instant::now());
                            if self.show_over || out_of_time || !self.control.restart(|n| plan.control(n), &other).await {
                                break other.ok();
                            }
                        }
                    }
                }
                status = ended(&mut self.stage.child) => {
                    self.stage.child = None;
                    match status {
                        Ok(s) if s.success() => self.show_over = true, // the control plane follows
                        other => if !self.stage.restart(|n| plan.stage(n), &other).await {
                            break other.ok();
                        },
                    }
                }
                _ = heard(&self.stage.notify) => self.stage.last_sign = Instant::now(),
                _ = heard(&self.control.notify) => self.control.last_sign = Instant::now(),
                _ = tokio::time::sleep_until(stage_due) => self.stage.kill(),
                _ = tokio::time::sleep_until(control_due) => self.control.kill(),
                _ = self.signals.recv() => break None,
            }
        };
        self.stop_all().await;
        outcome
    }

    /// SIGTERM to both children (the control plane ends the show, the stage closes its
    /// streams), then SIGKILL to what is left after [`STOP_PATIENCE`].
    async fn stop_all(&mut self) {
        let children = [self.control.child.as_mut(), self.stage.child.as_mut()];
        let mut children: Vec<&mut Child> = children.into_iter().flatten().collect();
        for child in &children {
            terminate(child);
        }
        let deadline = Instant::now() + STOP_PATIENCE;
        for child in &mut children {
            if tokio::time::timeout_at(deadline, child.wait()).await.is_err() {
                eprintln!("emcee: a child did not stop in {STOP_PATIENCE:?}; killing it");
                let _ = child.kill().await;
            }
        }
    }
}
