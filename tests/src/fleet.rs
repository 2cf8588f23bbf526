//! The fleet's real parts for the tests: a private PostgreSQL (scripts/postgres.sh) and
//! `emcee-cloud` instances serving it, and the operator's `emcee-cloud` verbs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};

use crate::{bin_dir, free_port, workspace_root};

/// A PostgreSQL cluster of the test's own, stopped when dropped.
pub struct Postgres {
    dir: PathBuf,
    pub port: u16,
}

impl Postgres {
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_on(dir, free_port())
    }

    /// Starts (or restarts) the cluster in `dir` on `port`.
    pub fn start_on(dir: &Path, port: u16) -> Result<Self> {
        let script = workspace_root().join("scripts/postgres.sh");
        let status = Command::new("bash").arg(script).arg("start").arg(dir).arg(port.to_string()).status()?;
        ensure!(status.success(), "PostgreSQL did not start (is the postgresql package installed?)");
        Ok(Self { dir: dir.to_path_buf(), port })
    }

    /// The libpq connection string of its `emcee` database.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=emcee", self.port)
    }

    /// Stops and starts it again on the same port, as a database restart or failover would.
    pub fn restart(&self) -> Result<()> {
        self.stop();
        Self::start_on(&self.dir, self.port).map(std::mem::forget)
    }

    pub fn stop(&self) {
        let script = workspace_root().join("scripts/postgres.sh");
        let _ = Command::new("bash").arg(script).arg("stop").arg(&self.dir).status();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `emcee-cloud serve` on a loopback port, killed when dropped.
pub struct Cloud {
    child: Child,
    pub port: u16,
}

impl Cloud {
    pub fn serve(db: &Postgres, log: &Path) -> Result<Self> {
        Self::serve_on(db, free_port(), log)
    }

    pub fn serve_on(db: &Postgres, port: u16, log: &Path) -> Result<Self> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = Command::new(bin_dir().join("emcee-cloud"))
            .args(["--db", &db.conninfo(), "serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("emcee-cloud")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            ensure!(Instant::now() < deadline, "emcee-cloud never listened on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self { child, port })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the appliance's `[cloud] url` names.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/device", self.port)
    }

    /// Stops it at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `emcee-cloud --db … ARGS`.
pub fn cloud(db: &Postgres, args: &[&str]) -> Result<Output> {
    Ok(Command::new(bin_dir().join("emcee-cloud")).arg("--db").arg(db.conninfo()).args(args).output()?)
}

/// `emcee-cloud ARGS`, which must succeed: its standard output.
pub fn cloud_ok(db: &Postgres, args: &[&str]) -> Result<String> {
    let out = cloud(db, args)?;
    ensure!(out.status.success(), "emcee-cloud {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// The device `id` as `emcee-cloud status` shows it.
pub fn device(db: &Postgres, id: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&cloud_ok(db, &["status", id])?)?)
}
