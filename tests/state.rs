//! The state directory under damage: a garbled database is set aside (kept) for a new one and
//! the show starts from its files; a directory that cannot hold a database stops `emceed` with
//! exit 78 (systemd does not loop on it); a full disk leaves the stream on air, refuses new
//! lines with 507, shows in status, and the audit log records its gap once writes work again.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use emcee_daemon::store::Store;
use emcee_tests::daemon::{emcee, wait_until, Daemon};
use emcee_tests::{bin_dir, scratch_dir, write_show, Nginx};

fn json(out: &std::process::Output) -> Result<serde_json::Value> {
    ensure!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).context("the CLI prints JSON")
}

/// A show whose room stays closed until started (no stage needed).
fn closed_show(dir: &Path) -> Result<std::path::PathBuf> {
    let config = write_show(dir, &["Hello.", "Goodbye."], &["rtmp://127.0.0.1:1/live/x".into()], "loop")?;
    let text =
        std::fs::read_to_string(&config)?.replace("when_done = \"loop\"", "when_done = \"loop\"\nautostart = false");
    std::fs::write(&config, text)?;
    Ok(config)
}

#[test]
fn a_garbled_database_is_kept_aside_and_an_unusable_directory_exits_78() -> Result<()> {
    let dir = scratch_dir("state-damage")?;
    let config = closed_show(&dir)?;
    let daemon = Daemon::spawn(&config)?;
    ensure!(emcee(&["say", "Queued before the damage."], &config)?.status.success());
    daemon.stop()?;
    // Garbled on disk: the database file and, if one was left, its write-ahead log (which
    // SQLite would otherwise read a good first page from).
    let db = dir.join("state/state.db");
    let mut bytes = std::fs::read(&db)?;
    bytes[..16].copy_from_slice(b"garbled garbled!");
    std::fs::write(&db, &bytes)?;
    let wal = dir.join("state/state.db-wal");
    if let Ok(mut log) = std::fs::read(&wal) {
        log.iter_mut().take(64).for_each(|b| *b ^= 0x5a);
        std::fs::write(&wal, log)?;
    }

    // It comes up (no exit 1 and restart loop), from the files, and says what happened.
    let daemon = Daemon::spawn(&config)?;
    let status = json(&emcee(&["status"], &config)?)?;
    let kept = status["state"]["set_aside"]["kept_as"].as_str().context("set_aside in status")?.to_string();
    ensure!(std::fs::read(&kept)? == bytes, "the damaged database is kept as it was: {kept}");
    ensure!(status["queued_interactions"] == 0 && status["script_sentences"] == 2, "{status}");
    daemon.stop()?;
    let log = Store::open(&dir.join("state"))?.audit_since(0, 10)?;
    ensure!(log.iter().any(|r| r.event == "state_set_aside" && r.text.contains(&kept)), "{log:?}");

    // A state directory that cannot be: exit 78 with the reason, at once.
    let text = std::fs::read_to_string(&config)?.replace("dir = \"state\"", "dir = \"/proc/emcee-no-state\"");
    std::fs::write(&config, text)?;
    let out = Command::new(bin_dir().join("emceed")).arg("--config").arg(&config).stdout(Stdio::null()).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(78) && stderr.contains("/proc/emcee-no-state"), "{:?}: {stderr}", out.status);
    Ok(())
}

/// A small tmpfs mounted on a directory for the test's life.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ok =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status()?;
        ensure!(ok.success(), "mount a tmpfs on {} (the test needs root, as CI runs)", dir.display());
        Ok(Self(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with `dir/filler` until it refuses more.
fn fill(dir: &Path) -> Result<()> {
    use std::io::Write;
    let mut filler = std::fs::File::create(dir.join("filler"))?;
    let block = vec![0x55u8; 64 * 1024];
    while filler.write_all(&block).is_ok() {}
    // The last bytes a partial block could not take.
    while filler.write_all(&block[..512]).is_ok() {}
    Ok(())
}

#[test]
fn a_full_state_disk_keeps_the_show_on_air_and_the_audit_log_records_the_gap() -> Result<()> {
    let dir = scratch_dir("state-full")?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    let config = write_show(
        &dir,
        &["Welcome to the show.", "The disk may fill; the show goes on."],
        &[nginx.url("full")],
        "loop",
    )?;
    let small =
        std::fs::read_to_string(&config)?.replace("width = 640", "width = 320").replace("height = 360", "height = 180");
    std::fs::write(&config, small)?;
    let state = Tmpfs::mount(&dir.join("state"), "16m")?;
    let mut show = Command::new(bin_dir().join("emcee"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::fs::File::create(dir.join("run.log"))?)
        .stderr(std::fs::File::create(dir.join("run.err"))?)
        .spawn()?;
    let result = (|| -> Result<()> {
        let frames = || -> Result<u64> {
            let status = json(&emcee(&["status"], &config)?)?;
            ensure!(status["stage"]["outputs"][0]["state"] == "publishing", "not publishing: {status}");
            status["stage"]["frames"].as_u64().context("frames")
        };
        wait_until(Duration::from_secs(60), "on air", || Ok(frames()? > 30))?;
        // Lines accepted before the disk fills are kept and said.
        for i in 0..3 {
            ensure!(emcee(&["say", &format!("Accepted line {i}.")], &config)?.status.success());
        }
        fill(&state.0)?;
        let refused = emcee(&["say", "This one finds the disk full."], &config)?;
        let why = String::from_utf8_lossy(&refused.stderr);
        ensure!(!refused.status.success() && why.contains("HTTP 507") && why.contains("not queued"), "{why}");
        // The show writes its audit log as it plays: those writes fail, and status says so.
        wait_until(Duration::from_secs(30), "writes failing in status", || {
            Ok(json(&emcee(&["status"], &config)?)?["state"]["failing_since_ms"].is_i64())
        })?;
        let before = frames()?;
        std::thread::sleep(Duration::from_secs(3));
        ensure!(frames()? >= before + 60, "the stream went on (frames {before} → {})", frames()?);
        wait_until(Duration::from_secs(60), "the accepted lines said", || {
            Ok(json(&emcee(&["status"], &config)?)?["queued_interactions"] == 0)
        })?;
        // Room again: the next write works, and the gap is recorded.
        std::fs::remove_file(state.0.join("filler"))?;
        wait_until(Duration::from_secs(30), "writes working again", || {
            let status = json(&emcee(&["status"], &config)?)?;
            Ok(status["state"]["failing_since_ms"].is_null() && status["state"]["failed_writes"].as_u64() > Some(0))
        })?;
        let log = Store::open(&state.0)?.audit_since(0, 10_000)?;
        for r in &log {
            eprintln!("{} {} {} {} {}", r.seq, r.cue, r.source, r.event, r.text);
        }
        let gap = log.iter().find(|r| r.event == "gap").context("a gap record in the audit log")?;
        ensure!(gap.source == "system" && gap.text.contains("records lost"), "{gap:?}");
        Ok(())
    })();
    let _ = Command::new("kill").args(["-TERM", &show.id().to_string()]).status();
    let _ = show.wait();
    result
}
