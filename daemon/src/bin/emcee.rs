//! `emcee`: the command line.
//!
//! - `emcee check FILE`: validate a configuration; every error with line and column; exit 78.
//! - `emcee run --config FILE [--output URL]... [--run-for SECONDS]`: run the whole show in the
//!   foreground: the stage (`emcee-stage`) and the control plane (`emceed`) as two processes,
//!   as systemd runs them on the appliance.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
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
    }
}
