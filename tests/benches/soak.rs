//! Soak: the whole demo show — the human avatar, the Piper voice, scenes, cards, subtitles, a
//! looping script, operator lines and viewers' questions — played for a day of media time or
//! more, with the media clock unpaced (`EMCEE_BENCH_UNPACED`), into a local nginx-rtmp.
//!
//! `cargo bench -p emcee-tests --bench soak -- [--media-hours 24] [--fps 5] [--size 160x96]
//! [--every-s 20]` prints one Markdown row per media hour: wall time, both processes' resident
//! memory, open fds and threads, the state database's size, frames (late, repeated, slate), A/V
//! drift and the output's reconnects; then the slopes (least squares from hour 2, so start-up
//! and the speech cache's first fill do not count) and the extremes. Every `--every-s` wall
//! seconds an operator line or a viewer's question is sent through the CLI. The log of
//! `emceed` and its stage stays in the scratch directory.
//!
//! Not a test: hours of wall time; run once and record the table in docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use emcee_protocol::MEDIA_CLOCK_HZ;
use emcee_stage::media_loop::UNPACED_ENV;
use emcee_tests::daemon::{emcee, wait_until};
use emcee_tests::{bin_dir, free_port, scratch_dir, workspace_root, write_secret, Nginx};
use serde_json::Value;

struct Settings {
    media_hours: u64,
    fps: u32,
    size: (u32, u32),
    every: Duration,
}

impl Settings {
    fn from_args() -> Result<Self> {
        let mut s = Settings { media_hours: 24, fps: 5, size: (160, 96), every: Duration::from_secs(20) };
        let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
        while let Some(flag) = args.next() {
            let value = args.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--media-hours" => s.media_hours = value.parse()?,
                "--fps" => s.fps = value.parse()?,
                "--every-s" => s.every = Duration::from_secs(value.parse()?),
                "--size" => {
                    let (w, h) = value.split_once('x').context("--size WIDTHxHEIGHT")?;
                    s.size = (w.parse()?, h.parse()?);
                }
                other => bail!("unknown flag {other}"),
            }
        }
        Ok(s)
    }
}

/// The demo's show, paths made absolute, at the soak's size and rate, publishing to `url`.
fn write_config(dir: &Path, s: &Settings, url: &str) -> Result<PathBuf> {
    let (root, examples) = (workspace_root(), workspace_root().join("examples"));
    for file in ["demo-script.toml", "products.toml", "kettle.png"] {
        std::fs::copy(examples.join(file), dir.join(file)).with_context(|| format!("copy {file}"))?;
    }
    let (base, key) = url.rsplit_once('/').context("url has a key")?;
    write_secret(dir, "soak", key)?;
    let run = root.join("run");
    let config = format!(
        r##"[show]
script = "demo-script.toml"
when_done = "loop"
autostart = true

[video]
width = {w}
height = {h}
fps = {fps}
bitrate_kbps = 200
keyframe_interval_s = 2.0
encoder = "openh264"

[audio]
bitrate_kbps = 64
channels = 2

[avatar]
model = "{run}/assets/avatar/host.vrm"
subtitles = true
label = "AI-generated"
background = "#1f3550"
voice = "piper:en_US-joe-medium"

[speech]
voices = "{run}/voices"
onnxruntime = "{run}/lib/libonnxruntime.so.1.31.1"
espeak = "{run}/lib/espeak-ng"

[stage]
socket = "stage.sock"

[secrets]
dir = "secrets"

[content]
products = "products.toml"

[state]
dir = "state"

[api]
listen = "127.0.0.1:{api}"

[[output]]
url = "{base}"
stream_key = "soak"
"##,
        w = s.size.0,
        h = s.size.1,
        fps = s.fps,
        run = run.display(),
        api = free_port(),
    );
    let path = dir.join("show.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// Resident memory (MB), open fds and threads of a process.
#[derive(Clone, Copy, Default)]
struct Usage {
    rss_mb: f64,
    fds: usize,
    threads: usize,
}

fn usage(pid: u32) -> Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_default();
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_default()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    Ok(Usage { rss_mb: field("VmRSS:") / 1024.0, fds, threads: field("Threads:") as usize })
}

/// The child of `parent` named `name` (`emcee run` starts `emceed` and `emcee-stage`).
fn child_pid(parent: u32, name: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        // "PID (comm) STATE PPID …": the name may hold spaces, so split after its ')'.
        let (head, rest) = stat.rsplit_once(')')?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == parent && head.ends_with(&format!("({name}"))).then_some(pid)
    })
}

/// The state database's own file (its write-ahead log is recycled at about 4 MB).
fn file_mb(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6)
}

/// One row of the table: the show at a whole media hour.
struct Row {
    hour: u64,
    wall_s: f64,
    daemon: Usage,
    stage: Usage,
    db_mb: f64,
    health: Value,
}

impl Row {
    fn print(&self) {
        let h = &self.health;
        let n = |v: &Value| v.as_i64().unwrap_or(-1);
        let output = &h["outputs"][0];
        println!(
            "| {} | {:.0} | {:.1} | {} | {} | {:.1} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} |",
            self.hour,
            self.wall_s,
            self.daemon.rss_mb,
            self.daemon.fds,
            self.daemon.threads,
            self.stage.rss_mb,
            self.stage.fds,
            self.stage.threads,
            self.db_mb,
            n(&h["frames"]),
            n(&h["late_frames"]),
            n(&h["repeated_frames"]),
            n(&h["slate_frames"]),
            n(&h["av_drift_samples"]),
            n(&output["connects"]),
        );
    }
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

/// Plays the show, sampling once a wall second, until `media_hours` of media time.
struct Soak {
    settings: Settings,
    config: PathBuf,
    dir: PathBuf,
    /// `emcee run`, which supervises `emceed` and the stage.
    show: Child,
    started: Instant,
    rows: Vec<Row>,
    /// Extremes of the A/V drift over every sample, not only the hourly rows.
    drift: (i64, i64),
    interactions: u64,
}

impl Soak {
    fn status(&self) -> Result<Value> {
        let out = emcee(&["status"], &self.config)?;
        ensure!(out.status.success(), "emcee status: {}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Every `every` of wall time, a line or a question, in turn.
    fn interact(&mut self) -> Result<()> {
        self.interactions += 1;
        let (verb, text) = if self.interactions.is_multiple_of(2) {
            ("say", format!("A word from the store, number {}.", self.interactions))
        } else {
            ("ask", "How long is the warranty on the kettle?".to_string())
        };
        let out = emcee(&[verb, &text], &self.config)?;
        // A full queue (429) is the show's own back-pressure, not a failure of the soak.
        ensure!(
            out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already wait"),
            "emcee {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    fn sample(&mut self, hour: u64, health: Value) -> Result<()> {
        let pid = |name| child_pid(self.show.id(), name).with_context(|| format!("{name} is not running"));
        let (daemon, stage) = (pid("emceed")?, pid("emcee-stage")?);
        let row = Row {
            hour,
            wall_s: self.started.elapsed().as_secs_f64(),
            daemon: usage(daemon)?,
            stage: usage(stage)?,
            db_mb: file_mb(&self.dir.join("state/state.db")),
            health,
        };
        row.print();
        self.rows.push(row);
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        let hour_ts = MEDIA_CLOCK_HZ * 3600;
        let mut next_interaction = Instant::now() + self.settings.every;
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let status = self.status()?;
            let health = status["stage"].clone();
            let Some(media_ts) = health["media_ts"].as_u64() else { continue };
            let drift = health["av_drift_samples"].as_i64().unwrap_or_default();
            self.drift = (self.drift.0.min(drift), self.drift.1.max(drift));
            let hour = media_ts / hour_ts;
            if self.rows.last().is_none_or(|r| r.hour < hour) {
                self.sample(hour, health)?;
                if hour >= self.settings.media_hours {
                    return Ok(());
                }
            }
            if Instant::now() >= next_interaction {
                next_interaction += self.settings.every;
                self.interact()?;
            }
        }
    }

    fn summary(&self) {
        let from_two: Vec<&Row> = self.rows.iter().filter(|r| r.hour >= 2).collect();
        let per_hour = |f: fn(&Row) -> f64| slope(&from_two.iter().map(|r| (r.hour as f64, f(r))).collect::<Vec<_>>());
        let range = |f: fn(&Row) -> usize| {
            let values = self.rows.iter().map(f);
            (values.clone().min().unwrap_or(0), values.max().unwrap_or(0))
        };
        println!();
        println!("- emceed RSS slope: {:+.3} MB per media hour", per_hour(|r| r.daemon.rss_mb));
        println!("- stage RSS slope: {:+.3} MB per media hour", per_hour(|r| r.stage.rss_mb));
        println!("- state database: {:+.3} MB per media hour", per_hour(|r| r.db_mb));
        println!("- emceed fds {:?}, threads {:?}", range(|r| r.daemon.fds), range(|r| r.daemon.threads));
        println!("- stage fds {:?}, threads {:?}", range(|r| r.stage.fds), range(|r| r.stage.threads));
        println!("- A/V drift over every sample: min {} max {} samples", self.drift.0, self.drift.1);
        println!("- operator lines and questions sent: {}", self.interactions);
        let wall = self.started.elapsed().as_secs_f64();
        let media = self.rows.last().map_or(0, |r| r.hour) as f64 * 3600.0;
        println!("- wall {:.0} s for {:.0} s of media: {:.1}× real time", wall, media, media / wall.max(1.0));
    }
}

fn main() -> Result<()> {
    let settings = Settings::from_args()?;
    let dir = scratch_dir("soak")?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    let config = write_config(&dir, &settings, &nginx.app_url("pass", "soak"))?;
    let log = std::fs::File::create(dir.join("emceed.log"))?;
    let show = Command::new(bin_dir().join("emcee"))
        .args(["run", "--config"])
        .arg(&config)
        .env(UNPACED_ENV, "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()?;
    wait_until(Duration::from_secs(60), "the show answers", || Ok(emcee(&["status"], &config)?.status.success()))?;
    println!(
        "Soak: {}x{}@{} for {} media hours; scratch {}\n",
        settings.size.0,
        settings.size.1,
        settings.fps,
        settings.media_hours,
        dir.display()
    );
    println!("| media h | wall s | emceed MB | emceed fds | emceed threads | stage MB | stage fds | stage threads | state.db MB | frames | late | repeated | slate | A/V drift | connects |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut soak = Soak {
        settings,
        config,
        dir,
        show,
        started: Instant::now(),
        rows: Vec::new(),
        drift: (i64::MAX, i64::MIN),
        interactions: 0,
    };
    let played = soak.run();
    soak.summary();
    played?;
    Command::new("kill").args(["-TERM", &soak.show.id().to_string()]).status()?;
    let ended = soak.show.wait()?;
    ensure!(ended.success(), "emcee run ended with {ended}");
    Ok(())
}
