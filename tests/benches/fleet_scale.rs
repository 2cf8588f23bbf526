//! The fleet at scale: N simulated appliances — the real device link (`emcee_fleet::link`),
//! without a stage — enrolled and connected to one `emcee-cloud serve` on a private PostgreSQL.
//! A desired document is published to their group; how long until each device's report of the
//! new version is stored (p50/p95/max, from polling the database every 20 ms), and the server's
//! CPU time and peak memory over the whole run.
//!
//! `cargo bench -p emcee-tests --bench fleet_scale -- [DEVICES]` (default 500) prints a table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use emcee_cloud::store::Db;
use emcee_fleet::identity::DeviceKey;
use emcee_fleet::link::{FromCloud, Joining, Link, LinkSettings, ToCloud};
use emcee_tests::fleet::{cloud_ok, Cloud, Postgres};
use emcee_tests::scratch_dir;
use serde_json::json;
use tokio::sync::mpsc;

/// One simulated appliance: reports the desired version it was handed, as the agent would.
fn device(url: &str, key: DeviceKey, code: String) -> Result<()> {
    let (from_tx, mut from_rx) = mpsc::channel(16);
    let (to_tx, to_rx) = mpsc::channel(16);
    let settings = LinkSettings {
        url: url.parse()?,
        ca_file: None,
        key: Arc::new(key),
        joining: Joining::Enrol { code, name: "sim".into() },
        firmware: "bench".into(),
        applied_desired: 0,
    };
    tokio::spawn(Link::new(settings, from_tx, to_rx).run());
    tokio::spawn(async move {
        while let Some(message) = from_rx.recv().await {
            if let FromCloud::Desired(d) = message {
                let _ = to_tx.send(ToCloud::Report(json!({ "desired_version": d.version }))).await;
            }
        }
    });
    Ok(())
}

fn cpu_s_and_peak_mb(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, r)| r.split_whitespace().collect());
    let ticks: f64 = fields.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak = status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1));
    (ticks / 100.0, peak.and_then(|p| p.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0)
}

/// Seconds until at least `n` devices reported `version` (polling every 20 ms).
async fn converge(db: &Db, version: i64, total: usize, limit: Duration) -> Result<Vec<f64>> {
    let started = Instant::now();
    let mut reached = Vec::new();
    while reached.len() < total && started.elapsed() < limit {
        let row = db
            .client()
            .await?
            .query_one("SELECT count(*) FROM devices WHERE (reported->>'desired_version')::bigint = $1", &[&version])
            .await?;
        let n = row.get::<_, i64>(0) as usize;
        while reached.len() < n.min(total) {
            reached.push(started.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(reached.len() == total, "{} of {total} devices reported within {limit:?}", reached.len());
    Ok(reached)
}

fn main() -> Result<()> {
    let devices: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(500);
    let dir = scratch_dir("fleet-scale")?;
    let pg = Postgres::start(&dir.join("pg"))?;
    let server = Cloud::serve(&pg, &dir.join("cloud.log"))?;
    let codes: Vec<String> = (0..devices)
        .map(|_| Ok(cloud_ok(&pg, &["enrol-code", "--group", "scale"])?.trim().to_string()))
        .collect::<Result<_>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let db = Db::open(&pg.conninfo()).await?;
        let joined = Instant::now();
        for (i, code) in codes.into_iter().enumerate() {
            device(&server.url(), DeviceKey::create(&dir.join(format!("key-{i}")))?, code)?;
        }
        let online = "SELECT count(*) FROM devices WHERE online";
        while (db.client().await?.query_one(online, &[]).await?.get::<_, i64>(0) as usize) < devices {
            ensure!(joined.elapsed() < Duration::from_secs(120), "the devices did not all join");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let join_s = joined.elapsed().as_secs_f64();
        println!("| devices | all enrolled and online s | publish → reported p50 s | p95 s | max s | server CPU s (whole run) | server peak MB |");
        println!("|---|---|---|---|---|---|---|");
        for version in 1..=3i64 {
            db.set_group_desired("scale", &json!({ "content": format!("v{version}") })).await?;
            let times = converge(&db, version, devices, Duration::from_secs(60)).await?;
            let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
            let (cpu, peak) = cpu_s_and_peak_mb(server.pid());
            println!(
                "| {devices} | {join_s:.1} | {:.2} | {:.2} | {:.2} | {cpu:.2} | {peak:.1} |",
                at(0.5),
                at(0.95),
                at(1.0)
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok(())
    })
}
