//! Interrupt, answer and resume, end to end: a real show into nginx-rtmp, an operator line sent
//! through the CLI while the first sentence plays, then the checks: the audit log has the cut,
//! the line and the re-said sentence in order, and the recording sounds that way.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use emcee_daemon::store::{AuditRecord, Store};
use emcee_tests::{bin_dir, probe, scratch_dir, spawn_show, wait_for_end, write_show, Nginx};

const SCRIPT: [&str; 2] = [
    "Our kettle has a smart thermostat, a one litre capacity, and a two year warranty.",
    "Thank you for <mark name=\"gesture:nod\"/>watching.",
];

fn emcee(args: &[&str], config: &std::path::Path) -> Result<std::process::Output> {
    Ok(Command::new(bin_dir().join("emcee")).args(args).arg("--config").arg(config).output()?)
}

/// RMS of the recording's audio in [from_ms, to_ms).
fn rms(pcm: &[i16], from_ms: i64, to_ms: i64) -> f64 {
    let (a, b) = ((from_ms.max(0) * 48) as usize, ((to_ms * 48) as usize).min(pcm.len()));
    if a >= b {
        return 0.0;
    }
    (pcm[a..b].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / (b - a) as f64).sqrt()
}

/// Best normalised correlation of two windows of `len_ms`, the second shifted sample by sample
/// within ±20 ms (AAC frames fall differently on the two takes).
fn similarity(pcm: &[i16], a_ms: i64, b_ms: i64, len_ms: i64) -> f64 {
    let len = (len_ms * 48) as usize;
    let a_start = (a_ms.max(0) * 48) as usize;
    let Some(a) = pcm.get(a_start..a_start + len) else { return 0.0 };
    let na: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    (-960i64..=960)
        .filter_map(|shift| {
            let start = usize::try_from(b_ms * 48 + shift).ok()?;
            let b = pcm.get(start..start + len)?;
            let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
            let nb: f64 = b.iter().map(|&y| f64::from(y).powi(2)).sum::<f64>().sqrt();
            Some(dot / (na * nb).max(1e-9))
        })
        .fold(f64::MIN, f64::max)
}

#[test]
fn an_operator_line_cuts_in_and_the_cut_sentence_is_said_again() -> Result<()> {
    let dir = scratch_dir("interrupt")?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    // `end`: the show also has to end by itself once its queues are dry.
    let config = write_show(&dir, &SCRIPT, &[nginx.url("live")], "end")?;
    let mut show = spawn_show(&config)?;

    // Wait for the first sentence to start, then interrupt it about a second in.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        ensure!(Instant::now() < deadline, "the first sentence never started");
        let out = emcee(&["log"], &config)?;
        if String::from_utf8_lossy(&out.stdout).contains("\"event\":\"started\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let said = emcee(&["say", "Sorry to interrupt: the store closes in ten minutes."], &config)?;
    ensure!(said.status.success(), "emcee say: {}", String::from_utf8_lossy(&said.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&said.stdout).context("say prints JSON")?;
    ensure!(reply["cue"] == "i1", "reply {reply}");
    let status = emcee(&["status"], &config)?;
    ensure!(status.status.success(), "emcee status: {}", String::from_utf8_lossy(&status.stderr));
    // Status tells the truth about the stream, without the stream key.
    let status: serde_json::Value = serde_json::from_slice(&status.stdout)?;
    let output = &status["stage"]["outputs"][0];
    ensure!(status["stage"]["encoder"] == "openh264" && output["state"] == "publishing", "{status}");
    // Why it is not the zero-copy encoder, in words and as a code alerts can match.
    let fallback = &status["stage"]["encoder_fallback"];
    ensure!(fallback["reason"].as_str().is_some_and(|r| !r.is_empty()), "{status}");
    if !emcee_nvenc::cuda::driver_present() {
        ensure!(fallback["code"] == "no_cuda_driver", "{status}");
    }
    ensure!(output["url"].as_str().is_some_and(|u| u.ends_with("/live/…")), "key not redacted: {status}");
    ensure!(output["bytes_sent"].as_u64().is_some_and(|b| b > 10_000), "{status}");
    ensure!(output["connects"] == 1 && output["dropped_packets"] == 0, "a healthy local output: {status}");

    // The show ends on its own when the script is done.
    let code = wait_for_end(&mut show, Duration::from_secs(60))?;
    ensure!(code.success(), "emcee run: {code}");
    drop(nginx);

    // The audit log: cut, operator line, the same sentence again, then the rest.
    let log: Vec<AuditRecord> = Store::open(&dir.join("state"))?.audit_since(0, 100)?;
    // Speech first; the actions (which run beside it) are checked after.
    let (actions, log): (Vec<AuditRecord>, Vec<AuditRecord>) =
        log.into_iter().partition(|r| r.event.starts_with("action_"));
    let events: Vec<String> = log.iter().map(|r| format!("{} {}", r.cue, r.event)).collect();
    let expected = [
        "s0.0.0 started",
        "s0.0.0 cut",
        "i1 started",
        "i1 finished",
        "s0.0.1 started",
        "s0.0.1 finished",
        "s0.1.0 started",
        "s0.1.0 mark",
        "s0.1.0 finished",
    ];
    ensure!(events == expected, "audit log {events:#?}");
    ensure!(log[2].source == "operator" && log[2].text.starts_with("Sorry to interrupt"), "{:?}", log[2]);
    ensure!(log[4].text == SCRIPT[0], "the cut sentence is said again whole: {:?}", log[4]);
    // The SSML mark fired inside its sentence, before "watching".
    ensure!(log[7].text == "gesture:nod", "{:?}", log[7]);
    ensure!(
        log[6].media_ms < log[7].media_ms && log[7].media_ms < log[8].media_ms,
        "mark inside its sentence: {log:?}"
    );
    ensure!(log[8].text == "Thank you for watching.", "plain text in the audit log: {:?}", log[8]);
    // The mark's nod started at the mark and played to its end (0.9 s), whatever the speech did.
    let nod: Vec<(String, i64)> = actions.iter().map(|r| (format!("{} {}", r.event, r.text), r.media_ms)).collect();
    ensure!(nod.len() == 2 && nod[0].0 == "action_started gesture:nod" && nod[0].1 == log[7].media_ms, "{nod:?}");
    ensure!(nod[1].0 == "action_finished gesture:nod" && nod[1].1 - nod[0].1 == 900, "{nod:?}");

    // The recording sounds like the log says.
    let rec = dir.join("nginx/rec/live.flv");
    ensure!(probe::decode_errors(&rec)?.trim().is_empty(), "decode errors");
    let pcm = probe::mono_audio(&rec)?;
    let at = |i: usize| log[i].media_ms;
    let (cut, line_start, line_end, again) = (at(1), at(2), at(3), at(4));
    let speech = rms(&pcm, at(0) + 100, cut - 100);
    let after_cut = rms(&pcm, cut + 60, line_start - 20);
    let line = rms(&pcm, line_start + 100, line_end - 100);
    eprintln!("rms: sentence {speech:.0}, after the cut {after_cut:.0}, operator line {line:.0}");
    ensure!(speech > 800.0 && line > 800.0, "speech where the log says speech");
    ensure!(after_cut < speech / 20.0, "silence after the cut: {after_cut:.0} vs {speech:.0}");
    // The sentence restarts from its beginning: its first 600 ms sound like the first take's.
    let same = similarity(&pcm, at(0), again, 600);
    let different = similarity(&pcm, at(0), line_start, 600);
    eprintln!("similarity of the re-said start {same:.2}, of the operator line {different:.2}");
    ensure!(same > 0.6 && different < 0.3, "re-said start {same:.2}, operator line {different:.2}");

    // The room ended by itself: the picture fades to black over the last second, then closes.
    let frames = probe::gray_frames(&rec, 640, 360)?;
    let mean = |f: &Vec<u8>| f.iter().map(|&y| f64::from(y)).sum::<f64>() / f.len() as f64;
    let (before, last) = (mean(&frames[frames.len() - 45]), mean(&frames[frames.len() - 1]));
    ensure!(before > 40.0 && last < 20.0, "fade: {before:.1} 1.5 s before the end, {last:.1} at the end");
    Ok(())
}

/// A room outside its schedule window streams nothing; lines wait durably; `start` opens it.
#[test]
fn a_closed_room_waits_queues_lines_and_opens_on_start() -> Result<()> {
    let dir = scratch_dir("closed-room")?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    let config = write_show(&dir, &SCRIPT[1..], &[nginx.url("room")], "end")?;
    // A window twelve hours from now: the room is closed for this whole test.
    let hour = (jiff_hour_utc() + 12) % 24;
    let mut text = std::fs::read_to_string(&config)?;
    // Products, so questions have answers.
    std::fs::copy(emcee_tests::workspace_root().join("examples/products.toml"), dir.join("products.toml"))?;
    text = text.replace("[state]", "[content]\nproducts = \"products.toml\"\n\n[state]");
    text.push_str(&format!(
        "\n[[schedule]]\ndays = [\"daily\"]\nstart = \"{hour:02}:00\"\nend = \"{hour:02}:30\"\ntime_zone = \"UTC\"\n"
    ));
    std::fs::write(&config, text)?;
    let mut show = spawn_show(&config)?;

    let status = wait_for_api(&config)?;
    ensure!(status["room"] == "idle" && status["stage_connected"] == false, "{status}");
    let said = emcee(&["say", "Welcome, early visitors."], &config)?;
    ensure!(said.status.success(), "say: {}", String::from_utf8_lossy(&said.stderr));
    // A viewer's question, answered from the products' FAQ; the same question again is not
    // answered twice.
    let asked: serde_json::Value =
        serde_json::from_slice(&emcee(&["ask", "How long is the warranty?"], &config)?.stdout)?;
    ensure!(asked["matched"] == true && asked["cue"] == "i2", "{asked}");
    ensure!(asked["answer"].as_str().is_some_and(|a| a.contains("two year")), "{asked}");
    let again: serde_json::Value =
        serde_json::from_slice(&emcee(&["ask", "how long is the warranty"], &config)?.stdout)?;
    ensure!(again["duplicate"] == true && again["cue"] == "i2", "{again}");
    let off_topic: serde_json::Value =
        serde_json::from_slice(&emcee(&["ask", "Who won the match last night?"], &config)?.stdout)?;
    ensure!(off_topic["matched"] == false && off_topic["cue"] == "i3", "{off_topic}");
    std::thread::sleep(Duration::from_secs(2));
    ensure!(!dir.join("nginx/rec/room.flv").exists(), "a closed room must not stream");
    let status: serde_json::Value = serde_json::from_slice(&emcee(&["status"], &config)?.stdout)?;
    ensure!(status["queued_interactions"] == 3, "{status}");
    let refused = emcee(&["skip"], &config)?;
    ensure!(refused.status.code() == Some(1), "skip in a closed room is refused");

    ensure!(emcee(&["start"], &config)?.status.success(), "start");
    wait_for_room(&config, "ended", Duration::from_secs(40))?;
    let finished = |from: i64| -> Result<Vec<String>> {
        let log = Store::open(&dir.join("state"))?.audit_since(from, 100)?;
        Ok(log.iter().filter(|r| r.event == "finished").map(|r| r.cue.clone()).collect())
    };
    let order = finished(0)?;
    ensure!(order == ["i1", "i2", "i3", "s0.0.0"], "queued lines first, then the script: {order:?}");
    let log = Store::open(&dir.join("state"))?.audit_since(0, 100)?;
    let answer = log.iter().find(|r| r.cue == "i2").map(|r| (r.source.clone(), r.text.clone()));
    ensure!(answer.as_ref().is_some_and(|(s, t)| s == "answer" && t.contains("two year")), "{answer:?}");
    ensure!(probe::decode_errors(&dir.join("nginx/rec/room.flv"))?.trim().is_empty());

    // The room has ended, the daemon has not: it waits for the next window or a start, and a
    // new show starts the finished script over.
    ensure!(show.try_wait()?.is_none(), "emcee run must outlive a show that has a schedule");
    let status: serde_json::Value = serde_json::from_slice(&emcee(&["status"], &config)?.stdout)?;
    ensure!(status["stage_connected"] == false, "{status}");
    let last = log.last().map_or(0, |r| r.seq);
    ensure!(emcee(&["start"], &config)?.status.success(), "second start");
    wait_for_room(&config, "ended", Duration::from_secs(40))?;
    let second = finished(last)?;
    ensure!(second == ["s1.0.0"], "the second show says the script again: {second:?}");

    // SIGINT, as Ctrl-C sends it: the daemon and the stage end cleanly.
    let interrupted = std::process::Command::new("kill").args(["-INT", &show.id().to_string()]).status()?;
    ensure!(interrupted.success());
    let code = wait_for_end(&mut show, Duration::from_secs(30))?;
    ensure!(code.success(), "emcee run: {code}");
    drop(nginx);
    Ok(())
}

/// Polls `emcee status` until the room is in `state`.
fn wait_for_room(config: &std::path::Path, state: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let out = emcee(&["status"], config)?;
        if out.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            if status["room"] == state {
                return Ok(());
            }
        }
        ensure!(Instant::now() < deadline, "the room did not reach `{state}` within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn jiff_hour_utc() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 3600 % 24)
}

/// Polls `emcee status` until the daemon answers.
fn wait_for_api(config: &std::path::Path) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = emcee(&["status"], config)?;
        if out.status.success() {
            return Ok(serde_json::from_slice(&out.stdout)?);
        }
        ensure!(Instant::now() < deadline, "the API never answered: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
}
