//! `emcee-stage`: see the library's documentation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use emcee_protocol::{DEFAULT_STAGE_LISTEN, EXIT_CONFIG};

#[derive(Parser)]
#[command(version, about = "emcee media stage: renders, encodes and streams the show")]
struct Args {
    /// The appliance's configuration: the stage listens where its `[stage] listen` says (the
    /// control plane reads the same key), or on the default address when the key is absent.
    #[arg(long, conflicts_with = "listen")]
    config: Option<PathBuf>,
    /// Address to accept the control plane's WebSocket on (loopback only on the appliance);
    /// `emcee run` passes the configured one.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let listen = match (args.listen, &args.config) {
        (Some(listen), _) => listen,
        (None, Some(config)) => match configured_listen(config) {
            Ok(listen) => listen,
            Err(e) => {
                eprintln!("emcee-stage: {}: {e}", config.display());
                std::process::exit(EXIT_CONFIG);
            }
        },
        (None, None) => DEFAULT_STAGE_LISTEN,
    };
    emcee_stage::serve(listen).await?;
    Ok(())
}

/// `[stage] listen` of the configuration file. The control plane validates the whole file
/// (`emcee check`); the stage reads only this key.
fn configured_listen(path: &Path) -> Result<SocketAddr, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let doc =
        toml_edit::ImDocument::parse(text.as_str()).map_err(|e| format!("not valid TOML: {}", e.message().trim()))?;
    let Some(item) = doc.get("stage").and_then(|s| s.get("listen")) else {
        return Ok(DEFAULT_STAGE_LISTEN);
    };
    let text = item.as_str().ok_or("[stage] listen must be a string")?;
    text.parse().map_err(|_| format!("[stage] listen = \"{text}\" is not an address like \"{DEFAULT_STAGE_LISTEN}\""))
}
