//! Content pushed through the API: checked against the other document (every problem with its
//! line and column), stored in the state database, kept over a restart, played from the next
//! sentence boundary of a live show, and given back to the file on reset.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use emcee_daemon::store::{AuditRecord, Store};
use emcee_tests::daemon::{emcee, statuses_during, Daemon};
use emcee_tests::{bin_dir, catalog, scratch_dir, spawn_show, wait_for_end, write_show, Nginx};

const MATERIALS: &str = r#"
[[product]]
sku = "KET-100"
name = "Smart kettle"
price = "29.00"
currency = "USD"
"#;

/// Segments that fill in the price (so a materials change rewords them).
const SEGMENTS: &str = r#"
[[segment]]
product = "KET-100"
sentences = [
  "The {product.name} is here.",
  "It costs <say-as interpret-as=\"currency\">{product.price}</say-as>.",
  "That is all for today.",
]
"#;

fn json(out: &Output) -> Result<serde_json::Value> {
    ensure!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).context("the CLI prints JSON")
}

/// A show with a products file whose script (lines) shows the kettle's card.
fn write_content_show(dir: &Path, sentences: &[&str], urls: &[String], show_keys: &str) -> Result<std::path::PathBuf> {
    let config = write_show(dir, sentences, urls, "end")?;
    std::fs::write(dir.join("products.toml"), MATERIALS)?;
    let text = std::fs::read_to_string(&config)?
        .replace("when_done = \"end\"", &format!("when_done = \"end\"\n{show_keys}"))
        + "\n[content]\nproducts = \"products.toml\"\n";
    std::fs::write(&config, text)?;
    Ok(config)
}

#[test]
fn content_is_checked_with_the_other_document_stored_and_kept_over_a_restart() -> Result<()> {
    let dir = scratch_dir("content-api")?;
    let lines = ["<mark name=\"card:show:KET-100\"/>Meet the kettle.", "Bye."];
    let config = write_content_show(&dir, &lines, &["rtmp://127.0.0.1:1/live/x".into()], "autostart = false")?;
    let daemon = Daemon::spawn(&config)?;

    let shown = json(&emcee(&["content", "show", "script"], &config)?)?;
    ensure!(shown["origin"]["kind"] == "file" && shown["format"] == "lines", "{shown}");
    ensure!(shown["body"].as_str().is_some_and(|b| b.starts_with("<mark")), "{shown}");

    // A broken script: every problem at once, with line and column, exit 65; nothing changes.
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "[[segment]]\nproduct = \"NOPE\"\nsentences = [\"Hi.\", \"<emphasis>x</emphasis>\"]\n")?;
    let out = emcee(&["content", "put", "script", broken.to_str().unwrap_or_default()], &config)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(65), "exit {:?}: {stderr}", out.status);
    ensure!(stderr.contains("script (request body):2:11: [[segment]] product \"NOPE\""), "{stderr}");
    ensure!(stderr.contains("script (request body):3:22: <emphasis>"), "{stderr}");
    // Materials that drop the product the running script shows: refused, naming the script.
    let renamed = dir.join("renamed.toml");
    std::fs::write(&renamed, MATERIALS.replace("KET-100", "KET-200"))?;
    let out = emcee(&["content", "put", "materials", renamed.to_str().unwrap_or_default()], &config)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(65), "exit {:?}: {stderr}", out.status);
    let script_file = dir.join("script.txt").display().to_string();
    ensure!(stderr.contains(&format!("{script_file}:1:")) && stderr.contains("\"KET-100\""), "{stderr}");
    let status = json(&emcee(&["status"], &config)?)?;
    ensure!(status["script_sentences"] == 2, "nothing changed: {status}");
    ensure!(json(&emcee(&["content", "show", "materials"], &config)?)?["origin"]["kind"] == "file");

    // A good script and a price change: accepted, stored, counted.
    let segments = dir.join("segments.toml");
    std::fs::write(&segments, SEGMENTS)?;
    let put = json(&emcee(&["content", "put", "script", segments.to_str().unwrap_or_default()], &config)?)?;
    ensure!(put["origin"]["kind"] == "stored" && put["format"] == "toml" && put["script_sentences"] == 3, "{put}");
    let cheaper = dir.join("cheaper.toml");
    std::fs::write(&cheaper, MATERIALS.replace("29.00", "19.00"))?;
    let put = json(&emcee(&["content", "put", "materials", cheaper.to_str().unwrap_or_default()], &config)?)?;
    ensure!(put["origin"]["kind"] == "stored" && put["script_sentences"] == 3, "{put}");

    // Kept over a restart; the files on disk are untouched.
    daemon.stop()?;
    ensure!(std::fs::read_to_string(dir.join("products.toml"))? == MATERIALS, "the file was not rewritten");
    let daemon = Daemon::spawn(&config)?;
    let script = json(&emcee(&["content", "show", "script"], &config)?)?;
    ensure!(script["origin"]["kind"] == "stored" && script["body"] == SEGMENTS, "{script}");
    let materials = json(&emcee(&["content", "show", "materials"], &config)?)?;
    ensure!(materials["body"].as_str().is_some_and(|b| b.contains("19.00")), "{materials}");
    ensure!(json(&emcee(&["status"], &config)?)?["script_sentences"] == 3);

    // Reset: the file is the script again. Materials reset too; the file still has KET-100.
    let reset = json(&emcee(&["content", "reset", "script"], &config)?)?;
    ensure!(reset["origin"]["kind"] == "file" && reset["script_sentences"] == 2, "{reset}");
    let reset = json(&emcee(&["content", "reset", "materials"], &config)?)?;
    ensure!(reset["origin"]["kind"] == "file", "{reset}");
    daemon.stop()?;
    ensure!(Store::open(&dir.join("state"))?.stored_content()?.is_empty(), "reset forgets the stored copies");
    Ok(())
}

#[test]
fn a_script_pushed_during_a_live_show_starts_at_the_next_sentence() -> Result<()> {
    let dir = scratch_dir("content-live")?;
    let nginx = Nginx::start(&dir.join("nginx"))?;
    let first = [
        "This first sentence of the old script is long enough to push a new script while it plays.",
        "Nobody should hear this old sentence.",
    ];
    let config = write_content_show(&dir, &first, &[nginx.url("live")], "")?;
    let mut show = spawn_show(&config)?;

    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(&emcee(&["log"], &config)?.stdout).contains("\"event\":\"started\"") {
        ensure!(Instant::now() < deadline, "the first sentence never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(800));
    let segments = dir.join("segments.toml");
    std::fs::write(&segments, SEGMENTS)?;
    let put = json(&emcee(&["content", "put", "script", segments.to_str().unwrap_or_default()], &config)?)?;
    ensure!(put["script_sentences"] == 3, "{put}");
    let code = wait_for_end(&mut show, Duration::from_secs(90))?;
    ensure!(code.success(), "emcee run: {code}");
    drop(nginx);

    let log: Vec<AuditRecord> = Store::open(&dir.join("state"))?.audit_since(0, 100)?;
    let said: Vec<String> = log.iter().map(|r| format!("{} {} {}", r.cue, r.event, r.text)).collect();
    let expected = [
        format!("s0.0.0 started {}", first[0]),
        format!("s0.0.0 finished {}", first[0]),
        "s1.0.0 started The Smart kettle is here.".to_string(),
        "s1.0.0 finished The Smart kettle is here.".to_string(),
        "s1.1.0 started It costs 29 dollars.".to_string(),
        "s1.1.0 finished It costs 29 dollars.".to_string(),
        "s1.2.0 started That is all for today.".to_string(),
        "s1.2.0 finished That is all for today.".to_string(),
    ];
    ensure!(said == expected, "the old sentence finishes uncut, then the new script plays whole: {said:#?}");
    // One sentence follows the other with the usual breath between, not a hole.
    let gap = log[2].media_ms - log[1].media_ms;
    ensure!((250..=1000).contains(&gap), "gap between the scripts {gap} ms");
    Ok(())
}

#[test]
fn a_flood_of_lines_and_questions_is_capped_with_a_count() -> Result<()> {
    let dir = scratch_dir("queue-caps")?;
    let config = write_content_show(&dir, &["Hello."], &["rtmp://127.0.0.1:1/live/x".into()], "autostart = false")?;
    let daemon = Daemon::spawn(&config)?;
    // The room is closed: everything queues, nothing is said.
    for i in 0..50 {
        let out = emcee(&["say", &format!("Operator line {i}.")], &config)?;
        ensure!(out.status.success(), "line {i}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let refused = emcee(&["say", "One too many."], &config)?;
    let why = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && why.contains("50 operator lines already wait") && why.contains("HTTP 429"),
        "{why}"
    );
    for i in 0..100 {
        let out = emcee(&["ask", &format!("Question number {i} about the kettle?")], &config)?;
        ensure!(out.status.success(), "question {i}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let refused = emcee(&["ask", "And one more question?"], &config)?;
    let why = String::from_utf8_lossy(&refused.stderr);
    ensure!(!refused.status.success() && why.contains("100 answers already wait") && why.contains("HTTP 429"), "{why}");
    let status = json(&emcee(&["status"], &config)?)?;
    ensure!(status["queued_interactions"] == 150, "nothing refused was queued: {status}");
    daemon.stop()
}

#[test]
fn a_script_pushed_beside_a_large_catalog_never_holds_the_show_loop() -> Result<()> {
    let dir = scratch_dir("large-catalog")?;
    let lines = ["<mark name=\"card:show:SKU-050000\"/>Meet product fifty thousand.", "Bye."];
    let config = write_content_show(&dir, &lines, &["rtmp://127.0.0.1:1/live/x".into()], "autostart = false")?;
    std::fs::write(dir.join("products.toml"), catalog(100_000))?;
    let started = Instant::now();
    let checked = std::process::Command::new(bin_dir().join("emcee")).arg("check").arg(&config).output()?;
    let check_took = started.elapsed();
    ensure!(checked.status.success(), "the catalog checks: {}", String::from_utf8_lossy(&checked.stderr));
    let daemon = Daemon::spawn(&config)?;
    eprintln!("booted: peak {} MB", daemon.peak_rss_kib()? / 1024);

    // A new script is checked against all 100,000 products and stored; meanwhile the show loop
    // answers every status at once. Had the check run inside the loop, no status asked during
    // the push would be answered before the push was.
    let script = dir.join("new-script.txt");
    std::fs::write(&script, "<mark name=\"card:show:SKU-099999\"/>The last product.\nAnd goodbye.\nSee you.\n")?;
    let push = statuses_during(&config, || {
        emcee(&["content", "put", "script", script.to_str().unwrap_or_default()], &config)
    })?;
    let put = json(&push.result?)?;
    ensure!(put["origin"]["kind"] == "stored" && put["script_sentences"] == 3, "{put}");
    let slowest = push.statuses.iter().max().copied().unwrap_or_default();
    eprintln!(
        "check {check_took:?}; push {:?}; {} statuses answered meanwhile, the slowest in {slowest:?}",
        push.took,
        push.statuses.len()
    );
    ensure!(
        push.statuses.len() >= 2,
        "the show loop answered {} statuses during a {:?} push",
        push.statuses.len(),
        push.took
    );
    ensure!(slowest < push.took / 2, "a status waited {slowest:?} during a {:?} push", push.took);
    ensure!(json(&emcee(&["status"], &config)?)?["script_sentences"] == 3);
    eprintln!("script pushed: peak {} MB", daemon.peak_rss_kib()? / 1024);
    // The whole catalog pushed through the API (every price changed): checked, stored and
    // swapped in within the daemon's memory limit (MemoryMax=512M in emceed.service).
    let cheaper = dir.join("cheaper.toml");
    std::fs::write(&cheaper, catalog(100_000).replace(".99\"", ".49\""))?;
    let push = statuses_during(&config, || {
        emcee(&["content", "put", "materials", cheaper.to_str().unwrap_or_default()], &config)
    })?;
    let put = json(&push.result?)?;
    ensure!(put["origin"]["kind"] == "stored", "{put}");
    let peak_mb = daemon.peak_rss_kib()? / 1024;
    eprintln!(
        "materials push {:?}, {} statuses meanwhile; emceed's peak RSS {peak_mb} MB",
        push.took,
        push.statuses.len()
    );
    ensure!(push.statuses.len() >= 2, "the show loop answered {} statuses during the push", push.statuses.len());
    ensure!(peak_mb < 512, "emceed peaked at {peak_mb} MB");
    // A broken one beside the large catalog: refused, and the loop still answers meanwhile.
    std::fs::write(&script, "<mark name=\"card:show:SKU-100000\"/>No such product.\n")?;
    let out = emcee(&["content", "put", "script", script.to_str().unwrap_or_default()], &config)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(65) && stderr.contains("no product with sku \"SKU-100000\""), "{stderr}");
    daemon.stop()
}
