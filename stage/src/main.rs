//! `emcee-stage`: see the library's documentation.

use std::path::PathBuf;

use clap::Parser;
use emcee_protocol::stage_host::{check_socket_path, StageHost};
use emcee_protocol::EXIT_CONFIG;
use emcee_stage::{channel, StageSettings};

#[derive(Parser)]
#[command(version, about = "emcee media stage: renders, encodes and streams the show")]
struct Args {
    /// The appliance's configuration: the stage takes its socket (`[stage] socket`) and the
    /// libraries it loads (`[speech] onnxruntime`, `espeak`) from here, never from the wire.
    #[arg(long, conflicts_with = "socket")]
    config: Option<PathBuf>,
    /// The control socket, for a stage without a configuration file (no Piper voices then).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// A user besides the stage's own that may drive it: the control plane's, on the appliance.
    #[arg(long)]
    controller: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    emcee_protocol::process::init_logging();
    emcee_protocol::process::set_up()?;
    let args = Args::parse();
    let host = match (&args.config, args.socket) {
        (Some(config), _) => StageHost::read(config).map_err(|e| format!("{}: {e}", config.display())),
        (None, Some(socket)) => check_socket_path(&socket).map(|_| StageHost { socket, ..StageHost::default() }),
        (None, None) => Ok(StageHost::default()),
    };
    let controllers: Result<Vec<u32>, _> = args.controller.iter().map(|name| channel::uid_of(name)).collect();
    let (host, controllers) = match (host, controllers) {
        (Ok(host), Ok(controllers)) => (host, controllers),
        (Err(e), _) => config_error(&e),
        (_, Err(e)) => config_error(&e.to_string()),
    };
    emcee_stage::serve(StageSettings { host, controllers }).await?;
    Ok(())
}

fn config_error(message: &str) -> ! {
    eprintln!("emcee-stage: {message}");
    std::process::exit(EXIT_CONFIG);
}
