//! `emcee-cloud`: the fleet server (`serve`) and the operator's verbs, which act on the database
//! directly. The database is named by `--db` or `EMCEE_CLOUD_DB` (a libpq connection string;
//! keep a password out of it: use local socket auth or a pg service file).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use emcee_cloud::store::Db;
use emcee_cloud::{admin, devices, hub::Hub};
use emcee_fleet::wire::Command;

#[derive(Parser)]
#[command(version, about = "emcee fleet server")]
struct Args {
    /// The fleet database (libpq connection string).
    #[arg(long, env = "EMCEE_CLOUD_DB", global = true, default_value = "host=/run/postgresql dbname=emcee")]
    db: String,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Serve devices on ADDR (plain WebSocket: put TLS in front, or use it on loopback).
    Serve {
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: String,
    },
    /// Print a one-time enrolment code for GROUP.
    EnrolCode {
        #[arg(long)]
        group: String,
        /// Hours the code stays valid.
        #[arg(long, default_value_t = 24)]
        valid_hours: u64,
    },
    /// Cut a device off: its connection ends and it cannot join again.
    Revoke {
        device: String,
    },
    /// Every device, one JSON line each: its reported state and when it was last seen.
    Devices,
    /// One device, as JSON.
    Status {
        device: String,
    },
    /// A device's audit log as it has reached the cloud, JSON lines.
    Log {
        device: String,
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
    /// Set the desired document (JSON) of a device, or of every device of a group.
    Desire {
        #[arg(long, conflicts_with = "device")]
        group: Option<String>,
        #[arg(long)]
        device: Option<String>,
        doc: String,
    },
    /// Have the host say a line now (as `emcee say`).
    Say {
        device: String,
        text: String,
    },
    /// A viewer's question (as `emcee ask`).
    Ask {
        device: String,
        text: String,
    },
    Start {
        device: String,
    },
    Stop {
        device: String,
    },
    Pause {
        device: String,
    },
    Resume {
        device: String,
    },
    Skip {
        device: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    emcee_protocol::process::init_logging();
    let args = Args::parse();
    let db = Db::open(&args.db).await.with_context(|| format!("the fleet database ({})", args.db))?;
    let (device, command) = match args.verb {
        Verb::Serve { listen } => {
            let listener =
                tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("listen on {listen}"))?;
            tracing::info!(%listen, "serving devices");
            let hub = std::sync::Arc::new(Hub::default());
            tokio::spawn(hub.clone().listen(args.db.clone()));
            tokio::select! {
                _ = devices::serve(listener, db, hub) => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return Ok(());
        }
        Verb::EnrolCode { group, valid_hours } => {
            println!("{}", admin::enrol_code(&db, &group, Duration::from_secs(valid_hours * 3600)).await?);
            return Ok(());
        }
        Verb::Revoke { device } => {
            db.revoke(&device).await?;
            return Ok(());
        }
        Verb::Devices => {
            for line in admin::devices(&db, None).await? {
                println!("{line}");
            }
            return Ok(());
        }
        Verb::Status { device } => {
            let found = admin::devices(&db, Some(&device)).await?;
            let Some(one) = found.first() else { bail!("no device `{device}`") };
            println!("{}", serde_json::to_string_pretty(one)?);
            return Ok(());
        }
        Verb::Log { device, since } => {
            for record in db.audit_of(&device, since, 100_000).await? {
                println!("{record}");
            }
            return Ok(());
        }
        Verb::Desire { group, device, doc } => {
            let doc: serde_json::Value = serde_json::from_str(&doc).context("the desired document is not JSON")?;
            match (group, device) {
                (Some(group), _) => println!("{} devices", db.set_group_desired(&group, &doc).await?),
                (None, Some(device)) => println!("version {}", db.set_desired(&device, &doc).await?),
                (None, None) => bail!("name a --device or a --group"),
            }
            return Ok(());
        }
        Verb::Say { device, text } => (device, Command::Say { text }),
        Verb::Ask { device, text } => (device, Command::Ask { text }),
        Verb::Start { device } => (device, Command::Start),
        Verb::Stop { device } => (device, Command::Stop),
        Verb::Pause { device } => (device, Command::Pause),
        Verb::Resume { device } => (device, Command::Resume),
        Verb::Skip { device } => (device, Command::Skip),
    };
    match admin::command(&db, &device, &command, Duration::from_secs(10)).await? {
        (_, Some(outcome)) => {
            println!("{}", serde_json::to_string(&outcome)?);
            if !outcome.ok {
                std::process::exit(1);
            }
        }
        (id, None) => {
            eprintln!("command {id} queued: `{device}` has not carried it out yet (offline?); it is dropped if not delivered within 5 minutes");
            std::process::exit(75);
        }
    }
    Ok(())
}
