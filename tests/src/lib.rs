//! Helpers for the end-to-end tests: locating the built binaries, free ports, running nginx
//! with the RTMP module, and reading back what arrived with ffprobe/ffmpeg.
//!
//! # Layout
//! - [`Binaries`]: where `emcee`, `emceed`, `emcee-stage` were built.
//! - [`Nginx`]: a private nginx-rtmp on a free loopback port, recording everything it receives.
//! - [`probe`]: ffprobe/ffmpeg read-back of a recording.
//! - [`daemon`]: the control plane alone, driven by the CLI; its responsiveness under load.
//! - [`catalog`]: a large products file.
//! - [`fleet`]: a private PostgreSQL and `emcee-cloud` instances.
#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub mod daemon;
pub mod fleet;
pub mod media;
pub mod probe;
pub mod proxy;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// The directory holding the built binaries (the profile this test was built with).
pub fn bin_dir() -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf()
}

/// A products file of `n` products, each as a catalog exported from a shop would have it
/// (SKUs `SKU-000000`…, a FAQ entry and two selling points each); about 350 bytes a product.
pub fn catalog(n: usize) -> String {
    let mut text = String::with_capacity(n * 360);
    for i in 0..n {
        text.push_str(&format!(
            "[[product]]\nsku = \"SKU-{i:06}\"\nname = \"Product number {i} with a longer name\"\nprice = \"{}.99\"\n\
             currency = \"USD\"\nselling_points = [\"It is good for reason {i}.\", \"It is cheap and lasts for years.\"]\n\
             images = [\"img/p{i}.png\"]\n[[product.faq]]\nq = \"How long is the warranty of product {i}?\"\n\
             a = \"Two years, parts and labour, for product {i}.\"\n\n",
            i % 500
        ));
    }
    text
}

/// A free loopback port.
///
/// Never the same port twice in one test process: the kernel may hand a just-closed port out
/// again, and a show given one port for both its API and its stage refuses its config.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub struct Nginx {
    pub dir: PathBuf,
    pub port: u16,
}

impl Nginx {
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_on(dir, free_port())
    }

    /// Starts (or restarts) nginx on `port`, recording into `dir`.
    pub fn start_on(dir: &Path, port: u16) -> Result<Self> {
        Self::start_with(dir, port, &[], None)
    }

    /// Also terminates TLS on `tls_port` with `cert` and `key` (PEM files) for `rtmps`.
    pub fn start_tls(dir: &Path, tls_port: u16, cert: &Path, key: &Path) -> Result<Self> {
        let tls = [tls_port.to_string(), cert.display().to_string(), key.display().to_string()];
        Self::start_with(dir, free_port(), &tls, None)
    }

    /// Also serves `rtmp://127.0.0.1:PORT/guarded/<key>`, asking `auth_url` before each publish
    /// (nginx-rtmp's `on_publish`: a 2xx answer allows it).
    pub fn start_guarded(dir: &Path, auth_url: &str) -> Result<Self> {
        Self::start_with(dir, free_port(), &[], Some(auth_url))
    }

    fn start_with(dir: &Path, port: u16, tls: &[String], auth_url: Option<&str>) -> Result<Self> {
        let script = workspace_root().join("scripts/nginx-rtmp.sh");
        let mut command = Command::new("bash");
        command.arg(&script).arg("start").arg(dir).arg(port.to_string()).args(tls);
        if let Some(url) = auth_url {
            command.env("AUTH_URL", url);
        }
        let status = command.status()?;
        if !status.success() {
            bail!("nginx-rtmp did not start (is libnginx-mod-rtmp installed?)");
        }
        Ok(Self { dir: dir.to_path_buf(), port })
    }

    pub fn url(&self, key: &str) -> String {
        self.app_url("live", key)
    }

    pub fn app_url(&self, app: &str, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{key}", self.port)
    }

    pub fn recording(&self, key: &str) -> PathBuf {
        self.dir.join("rec").join(format!("{key}.flv"))
    }
}

impl Nginx {
    /// Stops the server (its recordings stay).
    pub fn stop(&self) {
        let script = workspace_root().join("scripts/nginx-rtmp.sh");
        let _ = Command::new("bash").arg(script).arg("stop").arg(&self.dir).status();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh directory under the target dir (kept after the run for inspection).
pub fn scratch_dir(name: &str) -> Result<PathBuf> {
    let dir = bin_dir().join("e2e").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Writes secret `name` (mode 0600) into `dir/secrets`, the `[secrets] dir` of [`write_show`].
pub fn write_secret(dir: &Path, name: &str, secret: &str) -> Result<()> {
    let path = dir.join("secrets").join(name);
    let _ = std::fs::remove_file(&path);
    emcee_daemon::secrets::create_private(&path, secret).with_context(|| format!("write {}", path.display()))
}

/// Writes `show.toml` and `script.txt` into `dir` for a 640×360@30 show publishing to `urls`.
/// `when_done` is the `[show] when_done` policy; the API's port is a fresh loopback port, the
/// stage's socket is `dir/stage.sock`. Each URL's stream key goes into a secret file, named
/// from its `[[output]]` table, as on the appliance.
pub fn write_show(dir: &Path, sentences: &[&str], urls: &[String], when_done: &str) -> Result<PathBuf> {
    std::fs::write(dir.join("script.txt"), sentences.join("\n") + "\n")?;
    let mut outputs = String::new();
    for (i, url) in urls.iter().enumerate() {
        let (base, key) = url.rsplit_once('/').with_context(|| format!("{url} has no stream key"))?;
        let name = format!("output-{i}");
        write_secret(dir, &name, key)?;
        outputs += &format!("\n[[output]]\nurl = \"{base}\"\nstream_key = \"{name}\"\n");
    }
    let config = format!(
        r##"[show]
script = "script.txt"
when_done = "{when_done}"

[state]
dir = "state"

[api]
listen = "127.0.0.1:{api}"

[video]
width = 640
height = 360
fps = 30
bitrate_kbps = 1200
keyframe_interval_s = 2.0

[audio]
bitrate_kbps = 128
channels = 2

[avatar]
background = "#1f3550"
voice = "en-us"

[stage]
socket = "stage.sock"

[secrets]
dir = "secrets"
{outputs}"##,
        api = free_port(),
    );
    let path = dir.join("show.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// The Piper voice set-up installs (TEST ONLY: see scripts/setup.sh).
pub const NEURAL_VOICE: &str = "piper:en_US-joe-medium";

/// Switches the show configured by `config` (from [`write_show`]) to the neural test voice.
pub fn use_neural_voice(config: &Path) -> Result<()> {
    let run = workspace_root().join("run");
    let lib = run.join("lib/libonnxruntime.so.1.31.1");
    anyhow::ensure!(lib.exists(), "{}: run scripts/setup.sh", lib.display());
    let text = std::fs::read_to_string(config)?.replace("voice = \"en-us\"", &format!("voice = \"{NEURAL_VOICE}\""));
    let speech =
        format!("[speech]\nvoices = \"{}\"\nonnxruntime = \"{}\"\n\n", run.join("voices").display(), lib.display());
    std::fs::write(config, speech + &text)?;
    Ok(())
}

/// Starts `emcee run --config CONFIG` in the background, quietly.
pub fn spawn_show(config: &Path) -> Result<Child> {
    Ok(Command::new(bin_dir().join("emcee"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// Runs the show configured by `config` (`emcee run`) until it ends by itself; fails if it
/// does not end within `limit` or ends badly.
pub fn play_to_end(config: &Path, limit: Duration) -> Result<()> {
    let mut show = spawn_show(config)?;
    let code = wait_for_end(&mut show, limit)?;
    anyhow::ensure!(code.success(), "emcee run: {code}");
    Ok(())
}

/// The audit log of the show whose state directory is `dir/state`.
pub fn audit_log(dir: &Path) -> Result<Vec<emcee_daemon::store::AuditRecord>> {
    Ok(emcee_daemon::store::Store::open(&dir.join("state"))?.audit_since(0, 1000)?)
}

/// Media time (ms) of the first `event` of cue `cue` in `log` (any cue when `cue` is empty);
/// −1 when there is none.
pub fn media_ms(log: &[emcee_daemon::store::AuditRecord], cue: &str, event: &str) -> i64 {
    log.iter().find(|r| (cue.is_empty() || r.cue == cue) && r.event == event).map_or(-1, |r| r.media_ms)
}

/// Waits for a show to end by itself; kills it and fails after `limit`.
pub fn wait_for_end(show: &mut Child, limit: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = show.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = show.kill();
            let _ = show.wait();
            bail!("the show did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
