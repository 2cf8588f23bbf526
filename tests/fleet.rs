//! The fleet against its real parts: PostgreSQL as a local process, `emcee-cloud` instances,
//! `emceed` with `[cloud]`, and the device's own link code.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use emcee_daemon::scheduler::InteractionKind;
use emcee_fleet::identity::DeviceKey;
use emcee_fleet::link::{FromCloud, Joining, Link, LinkSettings, ToCloud};
use emcee_tests::daemon::{emcee, wait_until, Daemon};
use emcee_tests::fleet::{cloud, cloud_ok, device, Cloud, Postgres};
use emcee_tests::{free_port, scratch_dir, write_show};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// A show that stays closed (no stage needed) and joins the fleet at `url`.
fn fleet_show(dir: &Path, url: &str) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let config = write_show(dir, &["Hello."], &["rtmp://127.0.0.1:1/live/x".into()], "end")?;
    let text = std::fs::read_to_string(&config)?
        .replace("when_done = \"end\"", "when_done = \"end\"\nautostart = false")
        + &format!("\n[cloud]\nurl = \"{url}\"\nname = \"test store\"\n");
    std::fs::write(&config, text)?;
    Ok(config)
}

#[test]
fn an_appliance_enrols_reports_and_carries_out_the_clouds_commands() -> Result<()> {
    let dir = scratch_dir("fleet-enrol")?;
    let pg = Postgres::start(&dir.join("pg"))?;
    let server = Cloud::serve(&pg, &dir.join("cloud.log"))?;
    let code = cloud_ok(&pg, &["enrol-code", "--group", "store-eu"])?.trim().to_string();
    let config = fleet_show(&dir.join("box"), &server.url())?;

    let out = emcee(&["enrol", &code], &config)?;
    ensure!(out.status.success(), "enrol: {}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8(out.stdout)?;
    let id = said.trim().strip_prefix("enrolled as ").context("the device id")?.to_string();
    let key = std::fs::metadata(dir.join("box/state/device.key"))?;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600, "the device key is private");

    // The code was for one appliance.
    let other = fleet_show(&dir.join("other"), &server.url())?;
    let again = emcee(&["enrol", &code], &other)?;
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(why.contains("unknown, used or expired"), "{why}");

    let daemon = Daemon::spawn(&config)?;
    let room = serde_json::from_slice::<Value>(&emcee(&["status"], &config)?.stdout)?["room"].clone();
    wait_until(Duration::from_secs(20), "the device reports", || {
        let d = device(&pg, &id)?;
        Ok(d["online"] == true
            && d["reported"]["room"] == room
            && d["group"] == "store-eu"
            && d["name"] == "test store")
    })?;

    let local = || -> Result<Value> { Ok(serde_json::from_slice(&emcee(&["status"], &config)?.stdout)?) };
    let link = local()?["cloud"].clone();
    assert_eq!((link["state"].as_str(), link["device"].as_str()), (Some("joined"), Some(id.as_str())), "{link}");

    // A line from the cloud is queued like the operator's, as the cloud's.
    let done: Value = serde_json::from_str(&cloud_ok(&pg, &["say", &id, "A word from head office."])?)?;
    assert_eq!(done["ok"], true, "{done}");
    assert!(done["result"]["cue"].as_str().is_some_and(|c| c.starts_with('i')), "{done}");
    let queued = emcee_daemon::store::Store::open(&dir.join("box/state"))?.queued()?;
    assert_eq!(queued.len(), 1);
    assert_eq!(
        (queued[0].kind, queued[0].text.as_str()),
        (InteractionKind::Cloud, "<speak>A word from head office.</speak>")
    );
    wait_until(Duration::from_secs(10), "the report follows the show", || {
        Ok(device(&pg, &id)?["reported"]["queued_interactions"] == 1)
    })?;

    // A line the show would refuse from its own operator is refused, with the reason.
    let bad = cloud(&pg, &["say", &id, "<prosody rate=\"9000%\">Too fast.</prosody>"])?;
    assert!(!bad.status.success());
    let answer = String::from_utf8_lossy(&bad.stdout);
    assert!(answer.contains("not valid SSML"), "{answer}");

    // Revoked: cut off now, and kept out.
    cloud_ok(&pg, &["revoke", &id])?;
    wait_until(Duration::from_secs(10), "the device is cut off", || Ok(device(&pg, &id)?["online"] == false))?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(device(&pg, &id)?["online"], false, "a revoked device cannot join again");
    let link = local()?["cloud"].clone();
    assert!(link["state"] == "down" && link["reason"].as_str().is_some_and(|r| r.contains("revoked")), "{link}");
    assert!(emcee(&["status"], &config)?.status.success(), "the show goes on without its fleet");
    daemon.stop()
}

/// The device's link, as the appliance runs it, in the test's runtime.
struct TestLink {
    from_cloud: mpsc::Receiver<FromCloud>,
    to_cloud: mpsc::Sender<ToCloud>,
}

impl TestLink {
    fn start(url: &str, key: Arc<DeviceKey>, joining: Joining) -> Result<Self> {
        let (from_tx, from_cloud) = mpsc::channel(16);
        let (to_cloud, to_rx) = mpsc::channel(16);
        let settings = LinkSettings {
            url: url.parse()?,
            ca_file: None,
            key,
            joining,
            firmware: "test".into(),
            applied_desired: 0,
        };
        tokio::spawn(Link::new(settings, from_tx, to_rx).run());
        Ok(Self { from_cloud, to_cloud })
    }

    /// The next message from the link other than `Down`s (within `limit`), or the first `Down`
    /// when `downs` is true.
    async fn next(&mut self, limit: Duration, downs: bool) -> Result<FromCloud> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let message = tokio::time::timeout_at(deadline, self.from_cloud.recv()).await;
            match message {
                Ok(Some(FromCloud::Down { .. })) if !downs => {}
                Ok(Some(message)) => return Ok(message),
                Ok(None) => bail!("the link ended"),
                Err(_) => bail!("nothing from the link within {limit:?}"),
            }
        }
    }

    async fn joined(&mut self) -> Result<String> {
        match self.next(Duration::from_secs(20), false).await? {
            FromCloud::Joined { device, .. } => Ok(device),
            other => bail!("expected to join, got {other:?}"),
        }
    }

    async fn desired(&mut self) -> Result<(u64, Value)> {
        match self.next(Duration::from_secs(20), false).await? {
            FromCloud::Desired(d) => Ok((d.version, d.doc)),
            other => bail!("expected a desired document, got {other:?}"),
        }
    }
}

#[test]
fn the_shadow_is_versioned_across_instances_and_restarts_and_only_the_device_key_joins() -> Result<()> {
    let dir = scratch_dir("fleet-shadow")?;
    let pg_dir = dir.join("pg");
    let pg = Postgres::start(&pg_dir)?;
    let log = dir.join("cloud.log");
    // The device talks to instance B; the operator's changes are written to the database.
    let (_a, b_port) = (Cloud::serve(&pg, &log)?, free_port());
    let mut b = Cloud::serve_on(&pg, b_port, &log)?;
    let code = cloud_ok(&pg, &["enrol-code", "--group", "canary"])?.trim().to_string();
    let key = Arc::new(DeviceKey::create(&dir.join("device.key"))?);
    let rt = emcee_tests::media::runtime();
    rt.block_on(async {
        let mut link = TestLink::start(&b.url(), key.clone(), Joining::Enrol { code, name: "bench".into() })?;
        let id = link.joined().await?;

        cloud_ok(&pg, &["desire", "--device", &id, r#"{"content": "v1"}"#])?;
        assert_eq!(link.desired().await?, (1, json!({"content": "v1"})));
        link.to_cloud.send(ToCloud::Report(json!({"room": "live"}))).await?;
        wait_until(Duration::from_secs(10), "the report is stored", || {
            let d = device(&pg, &id)?;
            Ok(d["reported"]["room"] == "live" && d["reported_version"] == 1)
        })?;

        // Instance B restarts: the device joins again, is not handed version 1 twice, and
        // its next report goes on from the version stored.
        b.kill();
        b = Cloud::serve_on(&pg, b_port, &log)?;
        assert_eq!(link.joined().await?, id);
        cloud_ok(&pg, &["desire", "--group", "canary", r#"{"content": "v2"}"#])?;
        assert_eq!(link.desired().await?, (2, json!({"content": "v2"})));
        link.to_cloud.send(ToCloud::Report(json!({"room": "paused"}))).await?;
        wait_until(Duration::from_secs(10), "the next report", || Ok(device(&pg, &id)?["reported_version"] == 2))?;

        // PostgreSQL restarts: the instances connect again and a change made meanwhile arrives.
        pg.restart()?;
        cloud_ok(&pg, &["desire", "--device", &id, r#"{"content": "v3"}"#])?;
        assert_eq!(link.desired().await?, (3, json!({"content": "v3"})));

        // Only the device's own key joins as the device.
        let stranger = Arc::new(DeviceKey::create(&dir.join("stranger.key"))?);
        let mut impostor = TestLink::start(&b.url(), stranger, Joining::Enrolled { device: id.clone() })?;
        match impostor.next(Duration::from_secs(10), true).await? {
            FromCloud::Down { reason, .. } => {
                assert!(reason.contains("is not `") && reason.contains("key"), "{reason}")
            }
            other => bail!("the impostor got {other:?}"),
        }
        Ok::<_, anyhow::Error>(())
    })?;

    // A report on a stale version is refused, never merged.
    rt.block_on(async {
        let db = emcee_cloud::store::Db::open(&pg.conninfo()).await?;
        let id = db.devices(None).await?.remove(0).id;
        let held = db.reported_version(&id).await?;
        assert_eq!(db.report(&id, held, &json!({"n": 1})).await?, Ok(held + 1));
        assert_eq!(db.report(&id, held, &json!({"n": 2})).await?, Err(held + 1), "a stale base");
        assert_eq!(device(&pg, &id)?["reported"], json!({"n": 1}));
        Ok(())
    })
}

#[test]
fn a_partition_is_noticed_by_both_ends_and_the_link_comes_back() -> Result<()> {
    use emcee_tests::proxy::{Fault, FaultProxy};
    let dir = scratch_dir("fleet-partition")?;
    let pg = Postgres::start(&dir.join("pg"))?;
    let server = Cloud::serve(&pg, &dir.join("cloud.log"))?;
    let proxy = FaultProxy::start(server.port)?;
    let code = cloud_ok(&pg, &["enrol-code", "--group", "g"])?.trim().to_string();
    let key = Arc::new(DeviceKey::create(&dir.join("device.key"))?);
    let url = format!("ws://127.0.0.1:{}/v1/device", proxy.port);
    emcee_tests::media::runtime().block_on(async {
        let mut link = TestLink::start(&url, key, Joining::Enrol { code, name: "p".into() })?;
        let id = link.joined().await?;
        wait_until(Duration::from_secs(5), "online", || Ok(device(&pg, &id)?["online"] == true))?;

        proxy.set(Fault::Blackhole);
        let cut = std::time::Instant::now();
        match link.next(Duration::from_secs(40), true).await? {
            FromCloud::Down { reason, .. } => assert!(reason.contains("nothing from the cloud"), "{reason}"),
            other => bail!("expected the link to go down, got {other:?}"),
        }
        let noticed = cut.elapsed();
        assert!(noticed <= Duration::from_secs(30), "the device noticed after {noticed:?}");
        wait_until(Duration::from_secs(30).saturating_sub(cut.elapsed()), "the cloud notices", || {
            Ok(device(&pg, &id)?["online"] == false)
        })?;

        // A change made during the partition arrives once the link is back.
        cloud_ok(&pg, &["desire", "--device", &id, r#"{"content": "during"}"#])?;
        proxy.set(Fault::None);
        assert_eq!(link.joined().await?, id);
        assert_eq!(link.desired().await?, (1, json!({"content": "during"})));
        Ok(())
    })
}

#[test]
fn with_the_cloud_away_the_show_streams_and_its_audit_log_arrives_once_and_in_order_on_return() -> Result<()> {
    let dir = scratch_dir("fleet-offline")?;
    let pg = Postgres::start(&dir.join("pg"))?;
    let nginx = emcee_tests::Nginx::start(&dir.join("nginx"))?;
    let (port, log) = (free_port(), dir.join("cloud.log"));
    let mut server = Cloud::serve_on(&pg, port, &log)?;
    let code = cloud_ok(&pg, &["enrol-code", "--group", "g"])?.trim().to_string();
    let boxed = dir.join("box");
    std::fs::create_dir_all(&boxed)?;
    let lines = ["The first sentence.", "The second sentence.", "The third and last sentence."];
    let config = write_show(&boxed, &lines, &[nginx.url("fleet")], "end")?;
    let text = std::fs::read_to_string(&config)? + &format!("\n[cloud]\nurl = \"ws://127.0.0.1:{port}/\"\n");
    std::fs::write(&config, text)?;
    let out = emcee(&["enrol", &code], &config)?;
    ensure!(out.status.success(), "enrol: {}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout)?.trim().trim_start_matches("enrolled as ").to_string();

    // The cloud is away for the whole show: the show streams as ever.
    server.kill();
    emcee_tests::play_to_end(&config, Duration::from_secs(120))?;
    let kinds: Vec<String> = emcee_tests::probe::streams(&nginx.recording("fleet"))?
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(String::from))
        .collect();
    assert_eq!(kinds, ["h264", "aac"], "the stream arrived whole");
    let local = emcee_tests::audit_log(&boxed)?;
    assert!(local.iter().filter(|r| r.event == "finished").count() >= lines.len(), "{local:?}");

    // The cloud is back: the control plane (room closed) sends the audit log up, once.
    let _server = Cloud::serve_on(&pg, port, &log)?;
    let text =
        std::fs::read_to_string(&config)?.replace("when_done = \"end\"", "when_done = \"end\"\nautostart = false");
    std::fs::write(&config, text)?;
    let arrived = || -> Result<Vec<Value>> {
        cloud_ok(&pg, &["log", &id])?.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
    };
    let daemon = Daemon::spawn(&config)?;
    wait_until(Duration::from_secs(30), "the outbox drains", || Ok(arrived()?.len() >= local.len()))?;
    daemon.stop()?;
    // Joining again sends nothing twice.
    let daemon = Daemon::spawn(&config)?;
    wait_until(Duration::from_secs(20), "the device is back", || Ok(device(&pg, &id)?["online"] == true))?;
    std::thread::sleep(Duration::from_secs(3));
    daemon.stop()?;
    let cloud_log = arrived()?;
    let seqs: Vec<i64> = cloud_log.iter().map(|r| r["seq"].as_i64().unwrap_or(-1)).collect();
    let local_seqs: Vec<i64> = local.iter().map(|r| r.seq).collect();
    assert_eq!(seqs[..local_seqs.len()], local_seqs[..], "every record once, in order");
    for (up, here) in cloud_log.iter().zip(&local) {
        assert_eq!((up["event"].as_str(), up["text"].as_str()), (Some(here.event.as_str()), Some(here.text.as_str())));
    }
    let reported = device(&pg, &id)?["reported"]["outbox"].clone();
    assert_eq!(reported["lost"], 0, "{reported}");
    Ok(())
}
