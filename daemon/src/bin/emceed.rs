//! `emceed`: the control-plane daemon. Validates the configuration, then runs the show against
//! the stage. Exit 78 on a bad configuration or script, before connecting to anything.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use emcee_daemon::config::Config;
use emcee_daemon::control::{run_show, Ending};
use emcee_daemon::library::{image_base, Library};
use emcee_daemon::store::Store;
use emcee_daemon::{api, api_server, EXIT_CONFIG};
use emcee_protocol::shutdown::StopSignals;

#[derive(Parser)]
#[command(version, about = "emcee control plane")]
struct Args {
    #[arg(long, default_value = "/etc/emcee/emcee.toml")]
    config: PathBuf,
    /// Publish here instead of the configured outputs (repeatable).
    #[arg(long = "output")]
    outputs: Vec<String>,
    /// End the show gracefully after this many seconds.
    #[arg(long)]
    run_for: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    emcee_protocol::process::init_logging();
    // Before any file is made: the state database, the token and the logs' files are private.
    emcee_protocol::process::set_up()?;
    let args = Args::parse();
    let config = match Config::load(&args.config, &args.outputs) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    // A damaged database is set aside for a new one; a directory that cannot hold one will
    // not fix itself on a restart: exit 78, so systemd stops instead of looping.
    let (store, set_aside) = match Store::open_checked(&config.state_dir) {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(error = %e, "the state directory is unusable");
            eprintln!("{e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    // Content pushed through the API (kept in the state database) wins over the files. Read
    // on a thread that ends before the content thread starts, which then reuses its memory
    // (glibc hands a finished thread's allocator arena to the next new thread).
    let stored = store.stored_content()?;
    let at_boot = || {
        Library::at_boot(
            config.products.as_deref(),
            &config.script,
            (config.stage.avatar.scene, &image_base(&config)),
            stored,
        )
    };
    let content = match std::thread::scope(|s| s.spawn(at_boot).join()).expect("reading the content panicked") {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let ending = match args.run_for {
        Some(s) if s.is_finite() && s > 0.0 => Ending::After(Duration::from_secs_f64(s)),
        Some(s) => {
            eprintln!("--run-for {s}: must be a positive number of seconds");
            std::process::exit(EXIT_CONFIG);
        }
        None => Ending::RoomEnds,
    };
    let log_reader = Store::open(&config.state_dir)?;
    emcee_daemon::retention::spawn(config.state_dir.clone(), config.audit_retention)?;
    let token = api::load_or_create_token(&config.token_file)?;
    let listener = api::bind(config.api_listen).await?;
    let (calls_tx, calls_rx) = tokio::sync::mpsc::channel(64);
    if let Some(cloud) = &config.cloud {
        // Not fatal: the show streams without its fleet; the reason is in the journal.
        if let Err(e) = emcee_daemon::cloud::spawn(cloud, &config.state_dir, calls_tx.clone()) {
            tracing::error!(error = %e, "the fleet link cannot start; the show goes on without it");
        }
    }
    let app = api::router(token, calls_tx, log_reader);
    tracing::info!(addr = %config.api_listen, "API listening");
    tokio::spawn(api_server::serve(listener, app));
    run_show(&config, content, ending, StopSignals::new().first(), (store, set_aside), calls_rx).await?;
    Ok(())
}
