//! The appliance as a curious local user, a flood of clients and a wedged GPU driver meet it:
//! nobody but the control plane drives the stage, stopping `emcee run` leaves no process
//! behind, a hung or missing stage never makes the control plane deaf or unwatched, a flood of
//! idle API connections does not lock the operator out, and no stream key is printed anywhere.
//!
//! Tests that switch to another user (`setpriv`) need root, as CI runs; elsewhere they say so
//! and check only what an unprivileged user can.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use emcee_tests::daemon::wait_until;
use emcee_tests::{bin_dir, scratch_dir, wait_for_end, write_show, Nginx};

/// These tests each run a whole show; one at a time, so the stage renders in real time.
static SERIAL: Mutex<()> = Mutex::new(());

const SCRIPT: [&str; 2] = ["Welcome to the show.", "Our kettle boils a litre in three minutes."];

fn emcee(args: &[&str], config: &Path) -> Result<std::process::Output> {
    Ok(Command::new(bin_dir().join("emcee")).args(args).arg("--config").arg(config).output()?)
}

/// `emcee status`, and how long it took to answer.
fn timed_status(config: &Path) -> Result<(serde_json::Value, Duration)> {
    let asked = Instant::now();
    let out = emcee(&["status"], config)?;
    let took = asked.elapsed();
    ensure!(out.status.success(), "emcee status: {}", String::from_utf8_lossy(&out.stderr));
    Ok((serde_json::from_slice(&out.stdout)?, took))
}

/// Live: the stage connected and its first output publishing.
fn on_air(config: &Path) -> Result<bool> {
    let (status, _) = timed_status(config)?;
    Ok(status["stage_connected"] == true && status["stage"]["outputs"][0]["state"] == "publishing")
}

/// Pids of processes whose command line contains `pattern`.
fn pids_of(pattern: &str) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-f", pattern]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    // A zombie has exited: its status line says so.
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .is_ok_and(|s| !s.lines().any(|l| l.starts_with("State:") && l.contains("Z (zombie)")))
}

fn signal(pid: u32, name: &str) -> Result<()> {
    ensure!(Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status()?.success(), "kill -{name}");
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

/// Runs a Python snippet as user `nobody` (uid 65534); its stdout.
fn as_nobody(script: &str) -> Result<String> {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr))
}

/// A show that loops until stopped, to nginx; returns its directory, config and the server.
fn looping_show(name: &str) -> Result<(PathBuf, PathBuf, Nginx)> {
    let dir = scratch_dir(name)?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    let config = write_show(&dir, &SCRIPT, &[nginx.url(name)], "loop")?;
    let small =
        std::fs::read_to_string(&config)?.replace("width = 640", "width = 320").replace("height = 360", "height = 180");
    std::fs::write(&config, small)?;
    Ok((dir, config, nginx))
}

/// `emcee run` with its output (and its children's logs) in `dir/run.log`.
fn spawn_run(dir: &Path, config: &Path) -> Result<Child> {
    let log = std::fs::File::create(dir.join("run.log"))?;
    Ok(Command::new(bin_dir().join("emcee"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?)
}

/// A stand-in for systemd's notify socket: records when each `WATCHDOG=1` came.
struct Watchdog {
    path: PathBuf,
    pings: Arc<Mutex<Vec<Instant>>>,
}

impl Watchdog {
    fn bind(path: PathBuf) -> Result<Self> {
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path)?;
        let pings = Arc::new(Mutex::new(Vec::new()));
        let seen = pings.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = socket.recv(&mut buf) {
                if buf[..n].windows(10).any(|w| w == b"WATCHDOG=1") {
                    seen.lock().unwrap().push(Instant::now());
                }
            }
        });
        Ok(Self { path, pings })
    }

    /// The longest time without a ping between `from` and now.
    fn longest_gap_since(&self, from: Instant) -> Duration {
        let pings = self.pings.lock().unwrap();
        let mut last = from;
        let mut gap = Duration::ZERO;
        for &p in pings.iter().filter(|&&p| p > from) {
            gap = gap.max(p - last);
            last = p;
        }
        gap.max(last.elapsed())
    }
}

/// A child process killed when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn only_the_control_plane_can_drive_the_stage() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, config, _nginx) = looping_show("private-stage")?;
    let mut run = Reaped(spawn_run(&dir, &config)?);
    wait_until(Duration::from_secs(40), "the show on air", || on_air(&config))?;
    let socket = dir.join("stage.sock");
    let mode = std::fs::metadata(&socket)?.permissions().mode() & 0o777;
    ensure!(mode == 0o660, "the stage socket is {mode:o}");

    // No TCP listener belongs to the stage.
    let stage = pids_of(&format!("emcee-stage --config {}", config.display()));
    ensure!(stage.len() == 1, "one stage: {stage:?}");
    let listeners = String::from_utf8_lossy(&Command::new("ss").args(["-Htlnp"]).output()?.stdout).to_string();
    ensure!(!listeners.contains(&format!("pid={},", stage[0])), "the stage listens on TCP: {listeners}");

    // The same user, while the control plane is connected: refused, with the reason.
    let second = handshake_and_read(&socket)?;
    ensure!(second.contains("another control plane is connected"), "a second controller got: {second:?}");

    if !is_root() {
        eprintln!("not root: the other-user checks need setpriv as root (CI runs them)");
    } else {
        // Another user: the socket's mode keeps it out...
        let connect = format!(
            "import socket\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect({:?}); print('connected')\nexcept PermissionError: print('denied')",
            socket.display().to_string()
        );
        ensure!(as_nobody(&connect)?.starts_with("denied"), "another user connected to the stage socket");
        // ...and with the mode opened up, the stage's peer check still does: no handshake.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
        let drive = format!(
            "import socket\ns=socket.socket(socket.AF_UNIX)\ns.connect({:?})\ns.sendall(b'GET / HTTP/1.1\\r\\nHost: stage\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n')\ns.settimeout(5)\nprint('answer:', s.recv(4096))",
            socket.display().to_string()
        );
        // Dropped at once: the request meets a closed socket, or is read and answered by EOF.
        let answer = as_nobody(&drive)?;
        let dropped = ["answer: b''", "ConnectionResetError", "BrokenPipeError"].iter().any(|e| answer.contains(e));
        ensure!(dropped && !answer.contains("101"), "nobody got: {answer}");
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660))?;
    }
    // The show went on through all of it.
    ensure!(on_air(&config)?, "the show is still on air");
    signal(run.0.id(), "TERM")?;
    ensure!(wait_for_end(&mut run.0, Duration::from_secs(10))?.success(), "emcee run ends cleanly");
    Ok(())
}

/// A WebSocket handshake on `socket` as this user, then what the stage says first.
fn handshake_and_read(socket: &Path) -> Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: stage\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(8).any(|w| w == b"rejected") {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&got).to_string())
}

#[test]
fn stopping_emcee_run_leaves_no_process_behind() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (signal_name, limit) in [("TERM", Duration::from_secs(10)), ("KILL", Duration::from_secs(10))] {
        let (dir, config, _nginx) = looping_show(&format!("orphans-{}", signal_name.to_lowercase()))?;
        let mut run = Reaped(spawn_run(&dir, &config)?);
        wait_until(Duration::from_secs(40), "the show on air", || on_air(&config))?;
        let children: Vec<u32> =
            [format!("emcee-stage --config {}", config.display()), format!("emceed --config {}", config.display())]
                .iter()
                .flat_map(|p| pids_of(p))
                .collect();
        ensure!(children.len() == 2, "two children: {children:?}");
        let sent = Instant::now();
        signal(run.0.id(), signal_name)?;
        wait_until(limit, &format!("every child gone after SIG{signal_name}"), || {
            Ok(children.iter().all(|&pid| !alive(pid)))
        })?;
        let took = sent.elapsed();
        let _ = run.0.wait();
        ensure!(!dir.join("stage.sock").exists() || signal_name == "KILL", "the socket is removed on a clean stop");
        eprintln!("SIG{signal_name} to emcee run: every child gone in {} ms", took.as_millis());
    }
    Ok(())
}

#[test]
fn a_hung_stage_is_replaced_and_the_api_answers_throughout() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, config, _nginx) = looping_show("hung-stage")?;
    let mut run = Reaped(spawn_run(&dir, &config)?);
    wait_until(Duration::from_secs(40), "the show on air", || on_air(&config))?;
    let pattern = format!("emcee-stage --config {}", config.display());
    let hung = pids_of(&pattern);
    ensure!(hung.len() == 1, "one stage: {hung:?}");
    let control_before = pids_of(&format!("emceed --config {}", config.display()));
    // A wedged GPU driver looks like this.
    signal(hung[0], "STOP")?;
    let stopped = Instant::now();
    let mut slowest = Duration::ZERO;
    let replaced = loop {
        let (status, took) = timed_status(&config)?;
        slowest = slowest.max(took);
        let new_stage = pids_of(&pattern).into_iter().any(|pid| pid != hung[0]);
        if new_stage && status["stage_connected"] == true && status["stage"]["outputs"][0]["state"] == "publishing" {
            break stopped.elapsed();
        }
        ensure!(stopped.elapsed() < Duration::from_secs(30), "no new stage streaming 30 s after the old one hung");
        std::thread::sleep(Duration::from_millis(300));
    };
    ensure!(slowest < Duration::from_secs(1), "emcee status took {slowest:?} while the stage was hung");
    ensure!(!alive(hung[0]), "the hung stage was killed");
    // The control plane kept pinging its own watchdog all along: `emcee run` left it alone.
    let control = pids_of(&format!("emceed --config {}", config.display()));
    ensure!(control == control_before, "the control plane was restarted: {control_before:?} → {control:?}");
    eprintln!(
        "hung stage replaced and streaming after {} ms; slowest status {} ms",
        replaced.as_millis(),
        slowest.as_millis()
    );
    signal(run.0.id(), "TERM")?;
    ensure!(wait_for_end(&mut run.0, Duration::from_secs(10))?.success(), "emcee run ends cleanly");
    Ok(())
}

/// Starts `program --config CONFIG` with its log in `dir/NAME.log`, with `env`.
fn start(dir: &Path, program: &str, config: &Path, env: &[(&str, &Path)]) -> Result<Reaped> {
    let log = std::fs::File::create(dir.join(format!("{program}.log")))?;
    let mut command = Command::new(bin_dir().join(program));
    command.arg("--config").arg(config).stdout(Stdio::null()).stderr(log);
    for (k, v) in env {
        command.env(k, v);
    }
    Ok(Reaped(command.env("WATCHDOG_USEC", "2000000").spawn()?))
}

#[test]
fn a_stage_down_for_a_minute_leaves_the_control_plane_watched_and_answering() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, config, _nginx) = looping_show("stage-away")?;
    let watchdog = Watchdog::bind(dir.join("notify.sock"))?;
    let stage = start(&dir, "emcee-stage", &config, &[])?;
    let _control = start(&dir, "emceed", &config, &[("NOTIFY_SOCKET", &watchdog.path)])?;
    wait_until(Duration::from_secs(40), "the show on air", || on_air(&config))?;
    drop(stage); // killed, and kept down
    let down = Instant::now();
    let mut slowest = Duration::ZERO;
    while down.elapsed() < Duration::from_secs(60) {
        let (status, took) = timed_status(&config)?;
        slowest = slowest.max(took);
        if down.elapsed() > Duration::from_secs(3) {
            ensure!(status["stage_connected"] == false, "the stage is away: {status}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // WATCHDOG_USEC=2 s: a ping every second, so a gap of 2 s would have got it killed.
    let gap = watchdog.longest_gap_since(down);
    ensure!(gap < Duration::from_millis(1900), "the control plane's watchdog went {gap:?} without a ping");
    ensure!(slowest < Duration::from_secs(1), "emcee status took {slowest:?} while the stage was away");
    let readyz = api_get(&config, "/readyz")?;
    ensure!(readyz.starts_with("HTTP/1.1 503") && readyz.contains("the stage is not connected"), "{readyz}");
    // The stage comes back: the show with it.
    let _stage = start(&dir, "emcee-stage", &config, &[])?;
    wait_until(Duration::from_secs(30), "the show back on air", || on_air(&config))?;
    wait_until(Duration::from_secs(10), "ready", || Ok(api_get(&config, "/readyz")?.starts_with("HTTP/1.1 200")))?;
    eprintln!(
        "stage away 60 s: slowest status {} ms, longest watchdog gap {} ms",
        slowest.as_millis(),
        gap.as_millis()
    );
    Ok(())
}

#[test]
fn a_stage_that_refuses_the_show_is_asked_again_and_the_control_plane_stays_up() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, config, _nginx) = looping_show("refused")?;
    let _stage = start(&dir, "emcee-stage", &config, &[])?;
    let first = start(&dir, "emceed", &config, &[])?;
    wait_until(Duration::from_secs(40), "the show on air", || on_air(&config))?;
    // The control plane dies; one with another configuration comes up on the same stage,
    // which keeps streaming the first and refuses the second.
    drop(first);
    let other = dir.join("other.toml");
    std::fs::write(&other, std::fs::read_to_string(&config)?.replace("bitrate_kbps = 1200", "bitrate_kbps = 900"))?;
    let mut second = start(&dir, "emceed", &other, &[])?;
    wait_until(Duration::from_secs(20), "the refusal in status", || {
        let (status, _) = timed_status(&other)?;
        Ok(status["stage_refused"].as_str().is_some_and(|r| r.contains("another configuration")))
    })?;
    // No exit-and-restart loop: it stays up, answering, with the reason in /healthz and /readyz.
    std::thread::sleep(Duration::from_secs(3));
    ensure!(second.0.try_wait()?.is_none(), "emceed exited on the refusal");
    let healthz = api_get(&other, "/healthz")?;
    ensure!(healthz.starts_with("HTTP/1.1 200") && healthz.contains("another configuration"), "{healthz}");
    let readyz = api_get(&other, "/readyz")?;
    ensure!(readyz.starts_with("HTTP/1.1 503") && readyz.contains("the stage refused the show"), "{readyz}");
    Ok(())
}

/// The API's address of `config` (`[api] listen`).
fn api_addr(config: &Path) -> Result<String> {
    let text = std::fs::read_to_string(config)?;
    let api = text.split("[api]").nth(1).context("[api] in the config")?;
    Ok(api.split('"').nth(1).context("[api] listen")?.to_string())
}

/// One unauthenticated GET; the raw response.
fn api_get(config: &Path, path: &str) -> Result<String> {
    let mut s = std::net::TcpStream::connect(api_addr(config)?)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: emcee\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

#[test]
fn a_flood_of_idle_connections_does_not_lock_out_the_operator() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("api-flood")?;
    // The room stays closed (no stage needed): only the API is tried.
    let config = write_show(&dir, &SCRIPT, &["rtmp://127.0.0.1:1/live/flood".into()], "end")?;
    let text =
        std::fs::read_to_string(&config)?.replace("when_done = \"end\"", "when_done = \"end\"\nautostart = false");
    std::fs::write(&config, text)?;
    let watchdog = Watchdog::bind(dir.join("notify.sock"))?;
    let _control = start(&dir, "emceed", &config, &[("NOTIFY_SOCKET", &watchdog.path)])?;
    wait_until(Duration::from_secs(20), "the API up", || Ok(timed_status(&config).is_ok()))?;
    let addr = api_addr(&config)?;
    let began = Instant::now();
    let mut idle = Vec::new();
    for i in 0..1_100 {
        let mut s = std::net::TcpStream::connect(&addr)?;
        if i % 2 == 0 {
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: emcee\r\n")?; // and never the rest
        } // the other half say nothing at all
        idle.push(s);
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let (_, took) = timed_status(&config)?;
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(500));
    }
    ensure!(slowest < Duration::from_secs(1), "emcee status took {slowest:?} under 1,100 idle connections");
    ensure!(api_get(&config, "/healthz")?.starts_with("HTTP/1.1 200"), "/healthz under the flood");
    let gap = watchdog.longest_gap_since(began);
    ensure!(gap < Duration::from_millis(1900), "the watchdog went {gap:?} without a ping under the flood");
    // Half-sent requests are dropped after the header timeout; the server does not wait on them.
    std::thread::sleep(emcee_daemon::api_server::HEADER_TIMEOUT + Duration::from_secs(1));
    let mut closed = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
        let mut buf = [0u8; 512];
        if s.read(&mut buf).is_ok() {
            closed += 1; // EOF, or an error response then EOF
        }
    }
    ensure!(closed == idle.len(), "{closed} of {} idle connections closed after the header timeout", idle.len());
    eprintln!(
        "1,100 idle connections: slowest status {} ms, longest watchdog gap {} ms",
        slowest.as_millis(),
        gap.as_millis()
    );
    Ok(())
}

#[test]
fn no_stream_key_is_printed_anywhere_and_the_state_is_private() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("no-key")?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    let live_key = "sk-live-9f8e7d6c5b4a";
    let dead_key = "sk-dead-1a2b3c4d5e6f";
    let dead = format!("rtmp://127.0.0.1:{}/live/{dead_key}", emcee_tests::free_port());
    let config = write_show(&dir, &SCRIPT, &[nginx.url(live_key), dead], "loop")?;
    let mut run = Reaped(
        Command::new(bin_dir().join("emcee"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stdout(std::fs::File::create(dir.join("run.out"))?)
            .stderr(std::fs::File::create(dir.join("run.err"))?)
            .spawn()?,
    );
    wait_until(Duration::from_secs(40), "the show on air", || on_air(&config))?;
    wait_until(Duration::from_secs(20), "the dead output's error", || {
        Ok(timed_status(&config)?.0["stage"]["outputs"][1]["last_error"].is_string())
    })?;
    let (status, _) = timed_status(&config)?;
    let error = status["stage"]["outputs"][1]["last_error"].as_str().unwrap_or_default().to_string();
    ensure!(!error.contains("invalid url"), "the error itself is kept, only the key redacted: {error}");
    let token = std::fs::read_to_string(dir.join("state/api-token"))?;
    let metrics = {
        let mut s = std::net::TcpStream::connect(api_addr(&config)?)?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: emcee\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.trim()
        )?;
        let mut m = String::new();
        s.read_to_string(&mut m)?;
        m
    };
    ensure!(metrics.contains("emcee_output_bytes_sent_total"), "metrics: {metrics}");
    let check = Command::new(bin_dir().join("emcee")).arg("check").arg(&config).output()?;
    let log = emcee(&["log"], &config)?;
    signal(run.0.id(), "TERM")?;
    wait_for_end(&mut run.0, Duration::from_secs(10))?;
    let mut places = vec![
        ("status".to_string(), status.to_string()),
        ("metrics".to_string(), metrics),
        ("/healthz".to_string(), api_get(&config, "/healthz").unwrap_or_default()),
        (
            "emcee check".to_string(),
            format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr)),
        ),
        ("emcee log".to_string(), String::from_utf8_lossy(&log.stdout).to_string()),
    ];
    for file in ["run.out", "run.err"] {
        places.push((file.to_string(), std::fs::read_to_string(dir.join(file))?));
    }
    ensure!(places[4].1.contains("started"), "the audit log was read: {}", places[4].1);
    ensure!(places[6].1.lines().count() > 20, "debug logs were written");
    for (place, text) in &places {
        for key in [live_key, dead_key] {
            ensure!(
                !text.contains(key),
                "the stream key {key} in {place}: {}",
                text.lines().find(|l| l.contains(key)).unwrap_or("")
            );
        }
    }
    // The state is the control plane's alone.
    let mode = |p: &str| -> Result<u32> { Ok(std::fs::metadata(dir.join(p))?.permissions().mode() & 0o777) };
    ensure!(mode("state")? == 0o700 && mode("state/state.db")? == 0o600 && mode("state/api-token")? == 0o600);
    if is_root() {
        let read = format!(
            "try:\n open({:?}).read(); print('read')\nexcept PermissionError: print('denied')",
            dir.join("state/state.db").display().to_string()
        );
        ensure!(as_nobody(&read)?.starts_with("denied"), "another user read state.db");
    }
    drop(nginx);
    Ok(())
}
