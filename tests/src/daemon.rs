//! The control plane alone (`emceed`, no stage: with the room closed it never needs one),
//! driven through the `emcee` CLI, and how quickly its show loop answers while it works.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use crate::bin_dir;

/// `emcee ARGS --config CONFIG`.
pub fn emcee(args: &[&str], config: &Path) -> Result<Output> {
    Ok(Command::new(bin_dir().join("emcee")).args(args).arg("--config").arg(config).output()?)
}

/// A running `emceed`, killed if the test fails before stopping it.
pub struct Daemon(Child);

impl Daemon {
    /// Starts `emceed --config CONFIG` and waits until its API answers a status.
    pub fn spawn(config: &Path) -> Result<Self> {
        let daemon = Daemon(
            Command::new(bin_dir().join("emceed"))
                .arg("--config")
                .arg(config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !emcee(&["status"], config)?.status.success() {
            ensure!(Instant::now() < deadline, "the API never came up");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(daemon)
    }

    /// Its peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or_default();
        Ok(line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_default())
    }

    /// Stops it with SIGTERM; fails unless it exits cleanly.
    pub fn stop(mut self) -> Result<()> {
        Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status()?;
        let status = self.0.wait()?;
        ensure!(status.success(), "emceed exited with {status}");
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `check` every 200 ms until it holds; fails after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().unwrap_or(false) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    anyhow::bail!("{what}: not within {limit:?}")
}

/// What [`statuses_during`] saw.
pub struct Responsiveness<T> {
    /// What `work` returned.
    pub result: T,
    /// How long `work` took.
    pub took: Duration,
    /// How long each status asked while `work` ran took to answer (each goes through the
    /// show loop).
    pub statuses: Vec<Duration>,
}

/// Runs `work` (a request to the daemon configured by `config`) while asking the show for its
/// status again and again: a loop held by the work answers no status until the work is done.
pub fn statuses_during<T: Send>(config: &Path, work: impl FnOnce() -> T + Send) -> Result<Responsiveness<T>> {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            let started = Instant::now();
            let result = work();
            let took = started.elapsed();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            (result, took)
        });
        let mut statuses = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let asked = Instant::now();
            let out = emcee(&["status"], config)?;
            ensure!(out.status.success(), "status failed: {}", String::from_utf8_lossy(&out.stderr));
            // Only statuses asked and answered while the work ran count.
            if !done.load(std::sync::atomic::Ordering::SeqCst) {
                statuses.push(asked.elapsed());
            }
        }
        let (result, took) = worker.join().map_err(|_| anyhow::anyhow!("the work panicked"))?;
        Ok(Responsiveness { result, took, statuses })
    })
}
