//! `emcee-stage`: see the library's documentation.

use std::net::SocketAddr;

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "emcee media stage: renders, encodes and streams the show")]
struct Args {
    /// Address to accept the control plane's WebSocket on (loopback only on the appliance).
    #[arg(long, default_value = "127.0.0.1:7611")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    emcee_stage::serve(args.listen).await?;
    Ok(())
}
