//! `emcee`: the command line.
//!
//! - `emcee check FILE`: validate a configuration; every error with line and column; exit 78.
//! - `emcee status|say|ask|start|stop|pause|resume|skip|log [--config FILE]`: talk to the
//!   running control plane over its local API (token from the configured token file).
//! - `emcee content show|put|reset materials|script`: the show's content, replaced live.
//! - `emcee run --config FILE [--output URL]... [--run-for SECONDS]`: run the whole show in the
//!   foreground: the stage (`emcee-stage`) and the control plane (`emceed`) as two processes,
//!   as systemd runs them on the appliance.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use emcee_daemon::client::{ApiClient, ClientError};
use emcee_daemon::config::Config;
use emcee_daemon::library::{image_base, Library};
use emcee_daemon::supervisor::{supervise, Plan};
use emcee_daemon::EXIT_CONFIG;

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
    /// The voices this configuration can use: Piper voices in `[speech] voices`, and espeak-ng.
    Voices {
        #[arg(long)]
        config: PathBuf,
    },
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
    /// A viewer's question: answered from the products' FAQ and facts (or the holding line).
    Ask {
        text: String,
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
    /// The show's materials or script: print it, replace it, or go back to its file.
    Content {
        #[command(subcommand)]
        verb: ContentVerb,
    },
    /// Join the fleet of `[cloud] url` with a one-time code from `emcee-cloud enrol-code`: makes
    /// the device key (state directory, mode 0600) and keeps the device id. Run it as the
    /// service's user.
    Enrol {
        code: String,
        #[arg(long)]
        config: PathBuf,
    },
    /// The audit log of every utterance, as JSON lines.
    Log {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum ContentVerb {
    /// Print the document the show plays from (JSON: where it came from, format, text).
    Show {
        #[arg(value_parser = ["materials", "script"])]
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Replace it with FILE (TOML; a script may also be `.txt`, a sentence per line). It is
    /// checked with the other document first, kept in the state database, and played from the
    /// next sentence on.
    Put {
        #[arg(value_parser = ["materials", "script"])]
        name: String,
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Go back to the file named in the configuration.
    Reset {
        #[arg(value_parser = ["materials", "script"])]
        name: String,
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
/// EX_DATAERR: the daemon refused what was sent (bad SSML, content that does not check).
const EXIT_DATAERR: u8 = 65;

/// One request to the daemon that `args` configures; errors are printed, exit code returned.
fn api_request(
    args: &ApiArgs,
    request: impl FnOnce(&ApiClient) -> Result<serde_json::Value, ClientError>,
) -> Result<serde_json::Value, ExitCode> {
    let config = Config::load(&args.config, &[]).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG as u8)
    })?;
    let fail = |e: ClientError| {
        eprintln!("emcee: {e}");
        match e {
            ClientError::Unreachable { .. } => ExitCode::from(EXIT_UNAVAILABLE),
            ClientError::Refused { status: 422, .. } => ExitCode::from(EXIT_DATAERR),
            _ => ExitCode::FAILURE,
        }
    };
    request(&ApiClient::for_config(&config).map_err(fail)?).map_err(fail)
}

fn api_call(
    args: &ApiArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, ExitCode> {
    api_request(args, |client| client.call(method, path, body.as_ref()))
}

fn content(verb: ContentVerb) -> ExitCode {
    match verb {
        ContentVerb::Show { name, api } => print_json(api_call(&api, "GET", &format!("/v1/content/{name}"), None)),
        ContentVerb::Reset { name, api } => print_json(api_call(&api, "DELETE", &format!("/v1/content/{name}"), None)),
        ContentVerb::Put { name, file, api } => {
            let body = match std::fs::read(&file) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("emcee: {}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            let media = if file.extension().is_some_and(|e| e == "txt") { "text/plain" } else { "application/toml" };
            let path = format!("/v1/content/{name}");
            print_json(api_request(&api, |client| client.send("PUT", &path, media, &body)))
        }
    }
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

fn check(file: &Path, outputs: &[String]) -> Result<Config, ExitCode> {
    let config = Config::load(file, outputs).map_err(|errors| {
        eprintln!("{errors}");
        ExitCode::from(EXIT_CONFIG as u8)
    })?;
    // The files, as the daemon falls back to them (content pushed through the API is checked
    // when it is pushed).
    Library::load(config.products.as_deref(), &config.script, Vec::new())
        .and_then(|library| library.build(config.stage.avatar.scene, &image_base(&config)))
        .map_err(|errors| {
            eprintln!("{errors}");
            ExitCode::from(EXIT_CONFIG as u8)
        })?;
    Ok(config)
}

/// Prints the voices `config` can use, one per line: name, what it is, and whether it works.
fn list_voices(config: &Config) -> ExitCode {
    let speech = &config.stage.speech;
    let espeak = speech
        .espeak
        .as_ref()
        .map_or("the system's espeak-ng".to_string(), |d| format!("espeak-ng in {}", d.display()));
    println!("any espeak-ng voice (e.g. en-us, cmn)\t{espeak}");
    let Some(dir) = &speech.voices else {
        println!("(no [speech] voices directory: no Piper voices)");
        return ExitCode::SUCCESS;
    };
    match emcee_voices::installed_voices(dir) {
        Ok(voices) => {
            for (name, checked) in voices {
                match checked {
                    Ok(v) => println!(
                        "piper:{name}\tPiper, {} Hz, phonemes from espeak-ng `{}`",
                        v.sample_rate, v.espeak_voice
                    ),
                    Err(why) => println!("piper:{name}\tunusable: {why}"),
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("emcee: {}: {e}", dir.display());
            ExitCode::from(EXIT_CONFIG as u8)
        }
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
    let outputs_shown: Vec<String> =
        config.stage.outputs.iter().map(|o| emcee_protocol::redact_stream_key(&o.url)).collect();
    let plan = Plan {
        config_path,
        outputs,
        deadline: run_for.map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s)),
        bin_dir: std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)),
    };
    println!("emcee: streaming to {}", outputs_shown.join(", "));
    match supervise(plan).await {
        Ok(Some(s)) if s.success() => ExitCode::SUCCESS,
        Ok(Some(s)) => {
            eprintln!("emcee: the control plane exited with {s}");
            ExitCode::from(s.code().unwrap_or(1).clamp(1, 255) as u8)
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emcee: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn enrol(file: &std::path::Path, code: &str) -> ExitCode {
    let config = match check(file, &[]) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let Some(cloud) = &config.cloud else {
        eprintln!("emcee: {}: no [cloud] url to enrol with", file.display());
        return ExitCode::from(EXIT_CONFIG as u8);
    };
    match emcee_daemon::cloud::enrol(cloud, &config.state_dir, code).await {
        Ok(device) => {
            println!("enrolled as {device}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("emcee: enrolment failed: {reason}");
            ExitCode::FAILURE
        }
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
        Verb::Voices { config } => match check(&config, &[]) {
            Ok(config) => list_voices(&config),
            Err(code) => code,
        },
        Verb::Status(api) => print_json(api_call(&api, "GET", "/v1/status", None)),
        Verb::Say { text, priority, api } => print_json(api_call(
            &api,
            "POST",
            "/v1/say",
            Some(serde_json::json!({ "text": text, "priority": priority })),
        )),
        Verb::Ask { text, api } => {
            print_json(api_call(&api, "POST", "/v1/ask", Some(serde_json::json!({ "text": text }))))
        }
        Verb::Start(api) => print_json(api_call(&api, "POST", "/v1/room/start", None)),
        Verb::Stop(api) => print_json(api_call(&api, "POST", "/v1/room/stop", None)),
        Verb::Pause(api) => print_json(api_call(&api, "POST", "/v1/room/pause", None)),
        Verb::Resume(api) => print_json(api_call(&api, "POST", "/v1/room/resume", None)),
        Verb::Skip(api) => print_json(api_call(&api, "POST", "/v1/room/skip", None)),
        Verb::Content { verb } => content(verb),
        Verb::Enrol { code, config } => enrol(&config, &code).await,
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
