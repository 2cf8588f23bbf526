//! `emcee`: the command line.
//!
//! - `emcee check FILE`: validate a configuration; every error with line and column; exit 78.
//! - `emcee status|say|start|stop|pause|resume|skip|log [--config FILE]`: talk to the running
//!   control plane over its local API (token from the configured token file).
//! - `emcee run --config FILE [--output URL]... [--run-for SECONDS]`: run the whole show in the
//!   foreground: the stage (`emcee-stage`) and the control plane (`emceed`) as two processes,
//!   as systemd runs them on the appliance.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use emcee_daemon::client::{ApiClient, ClientError};
use emcee_daemon::config::Config;
use emcee_daemon::{script, EXIT_CONFIG};
use tokio::process::{Child, Command};

#[derive(Parser)]
#[command(version, about = "emcee: a 24/7 AI live host")]
struct Cli {
    #[command(subcommand)]
    command: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Validate a configuration file (exit 78 when it is bad).
    Check { file: PathBuf },
    /// Run the show in the foreground.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Publish here instead of the configured outputs (repeatable).
        #[arg(long = "output")]
        outputs: Vec<String>,
        /// End the show gracefully after this many seconds.
        #[arg(long)]
        run_for: Option<f64>,
    },
    /// The room, the script offset and the queues, as JSON.
    Status(ApiArgs),
    /// Have the host say an operator line now (cuts the script sentence, which resumes after).
    Say {
        text: String,
        /// Higher goes first among queued lines (-100..100).
        #[arg(long, default_value_t = 0)]
        priority: i32,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Start the live room.
    Start(ApiArgs),
    /// End the show gracefully after the current sentence.
    Stop(ApiArgs),
    /// Hold after the current sentence.
    Pause(ApiArgs),
    /// Continue after a pause.
    Resume(ApiArgs),
    /// Cut the current sentence and go on with the next.
    Skip(ApiArgs),
    /// The audit log of every utterance, as JSON lines.
    Log {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(clap::Args)]
struct ApiArgs {
    /// The daemon's configuration (for the API address and token file).
    #[arg(long, default_value = "/etc/emcee/emcee.toml")]
    config: PathBuf,
}

/// EX_UNAVAILABLE: the daemon is not running.
const EXIT_UNAVAILABLE: u8 = 69;

fn api_call(
    args: &ApiArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ExitCode> {
    let config = Config::load(&args.config, &[]).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG as u8)
    })?;
    let fail = |e: ClientError| {
        eprintln!("emcee: {e}");
        match e {
            ClientError::Unreachable { .. } => ExitCode::from(EXIT_UNAVAILABLE),
            _ => ExitCode::FAILURE,
        }
    };
    ApiClient::for_config(&config).map_err(fail)?.call(method, path, body.as_ref()).map_err(fail)
}

fn print_json(result: Result<serde_json::Value, ExitCode>) -> ExitCode {
    match result {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn check(file: &Path, outputs: &[String]) -> Result<Config, ExitCode> {
    let config = Config::load(file, outputs).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG as u8)
    })?;
    script::load(&config.script).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG as u8)
    })?;
    Ok(config)
}

async fn stop(child: &mut Child, name: &str, patience: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id() {
        // SIGTERM first, so it can close its streams.
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
    if tokio::time::timeout(patience, child.wait()).await.is_err() {
        eprintln!("emcee: {name} did not stop in {patience:?}; killing it");
        let _ = child.kill().await;
    }
}

async fn run(config_path: PathBuf, outputs: Vec<String>, run_for: Option<f64>) -> ExitCode {
    let config = match check(&config_path, &outputs) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(s) = run_for {
        if !(s.is_finite() && s > 0.0) {
            eprintln!("--run-for {s}: must be a positive number of seconds");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    }
    let mut stage = match Command::new(sibling("emcee-stage"))
        .arg("--listen")
        .arg(config.stage_listen.to_string())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("emcee: cannot start emcee-stage: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut control = Command::new(sibling("emceed"));
    control.arg("--config").arg(&config_path).kill_on_drop(true);
    for url in &outputs {
        control.arg("--output").arg(url);
    }
    if let Some(s) = run_for {
        control.arg("--run-for").arg(s.to_string());
    }
    let mut control = match control.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("emcee: cannot start emceed: {e}");
            stop(&mut stage, "emcee-stage", Duration::from_secs(5)).await;
            return ExitCode::FAILURE;
        }
    };
    println!("emcee: streaming to {}", config.stage.outputs.join(", "));

    // Ctrl-C goes to the whole process group; both children end the show themselves. We only
    // wait for them.
    let interrupted = tokio::signal::ctrl_c();
    let status = tokio::select! {
        status = control.wait() => status.ok(),
        _ = interrupted => {
            stop(&mut control, "emceed", Duration::from_secs(25)).await;
            None
        }
    };
    // After a clean end the stage exits by itself once its streams are closed; after a
    // failure of the control plane it is asked to end the show now.
    let clean = status.as_ref().is_none_or(|s| s.success());
    if !clean || tokio::time::timeout(Duration::from_secs(15), stage.wait()).await.is_err() {
        stop(&mut stage, "emcee-stage", Duration::from_secs(10)).await;
    }
    match status {
        Some(s) if s.success() => ExitCode::SUCCESS,
        Some(s) => {
            eprintln!("emcee: the control plane exited with {s}");
            ExitCode::from(s.code().unwrap_or(1).clamp(1, 255) as u8)
        }
        None => ExitCode::SUCCESS,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::parse().command {
        Verb::Check { file } => match check(&file, &[]) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Verb::Run { config, outputs, run_for } => run(config, outputs, run_for).await,
        Verb::Status(api) => print_json(api_call(&api, "GET", "/v1/status", None)),
        Verb::Say { text, priority, api } => print_json(api_call(
            &api,
            "POST",
            "/v1/say",
            Some(serde_json::json!({ "text": text, "priority": priority })),
        )),
        Verb::Start(api) => print_json(api_call(&api, "POST", "/v1/room/start", None)),
        Verb::Stop(api) => print_json(api_call(&api, "POST", "/v1/room/stop", None)),
        Verb::Pause(api) => print_json(api_call(&api, "POST", "/v1/room/pause", None)),
        Verb::Resume(api) => print_json(api_call(&api, "POST", "/v1/room/resume", None)),
        Verb::Skip(api) => print_json(api_call(&api, "POST", "/v1/room/skip", None)),
        Verb::Log { since, api } => match api_call(&api, "GET", &format!("/v1/log?since={since}"), None) {
            Ok(serde_json::Value::Array(records)) => {
                for r in records {
                    println!("{r}");
                }
                ExitCode::SUCCESS
            }
            Ok(other) => {
                println!("{other}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}
