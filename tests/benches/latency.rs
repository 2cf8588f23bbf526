//! Interaction latency on the real show (both processes, nginx-rtmp, lavapipe), wall clock:
//! - API `say` accepted → the stage reports the cut: the first silent sample at the encoder;
//! - API `ask` (FAQ hit) accepted → the answer's first sample at the encoder.
//!
//! The stage emits `finished`/`started` as it hands that tick's audio to the AAC encoder, and
//! the control plane writes them to the audit log with its wall time, so audit `wall_ms` minus
//! the moment the API answered is the latency (plus a few ms of WebSocket and SQLite).
//!
//! `cargo bench -p emcee-tests --bench latency [-- N]` (N rounds of each kind, default 10).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use emcee_daemon::client::ApiClient;
use emcee_daemon::store::{now_ms, AuditRecord, Store};
use emcee_tests::{scratch_dir, spawn_show, workspace_root, write_show, Nginx};

const SCRIPT: [&str; 2] = [
    "Our smart kettle boils a full litre of water in three minutes, and it keeps the water warm for an hour.",
    "The handle stays cool to the touch, and the lid opens with one finger, so it is easy to fill.",
];

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn wait_for(store: &Store, mut pred: impl FnMut(&[AuditRecord]) -> Option<i64>) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = store.audit_since(0, 100_000).expect("audit log");
        if let Some(v) = pred(&log) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for the audit log");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10);
    let dir = scratch_dir("latency").expect("scratch dir");
    let nginx = Nginx::start(&dir.join("nginx")).expect("nginx-rtmp");
    let config = write_show(&dir, &SCRIPT, &[nginx.url("bench")], "loop").expect("config");
    std::fs::copy(workspace_root().join("examples/products.toml"), dir.join("products.toml")).expect("products");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[state]", "[content]\nproducts = \"products.toml\"\n\n[state]");
    std::fs::write(&config, text).unwrap();
    let mut show = spawn_show(&config).expect("emcee run");

    let store = Store::open(&dir.join("state")).expect("state");
    let token_file = dir.join("state/api-token");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !token_file.exists() {
        assert!(Instant::now() < deadline, "no API token");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cfg = emcee_daemon::config::Config::load(&config, &[]).expect("config");
    let client = ApiClient::for_config(&cfg).expect("client");

    let mut cut_ms = Vec::new();
    let mut answer_ms = Vec::new();
    for round in 0..rounds * 2 {
        // About a second into a script sentence.
        let seen = wait_for(&store, |log| {
            let last = log.last()?;
            (last.source == "script" && last.event == "started").then_some(last.seq)
        });
        std::thread::sleep(Duration::from_millis(900 + (round as u64 * 37) % 300));
        let asking = round % 2 == 1;
        let reply = if asking {
            client.call(
                "POST",
                "/v1/ask",
                Some(&serde_json::json!({ "text": format!("How long is the warranty? ({round})") })),
            )
        } else {
            client.call("POST", "/v1/say", Some(&serde_json::json!({ "text": "Sorry to interrupt, a quick note." })))
        }
        .expect("API call");
        let accepted = now_ms();
        let cue = reply["cue"].as_str().expect("cue").to_string();
        let cut = wait_for(&store, |log| log.iter().find(|r| r.seq > seen && r.event == "cut").map(|r| r.wall_ms));
        let started =
            wait_for(&store, |log| log.iter().find(|r| r.cue == cue && r.event == "started").map(|r| r.wall_ms));
        if asking {
            answer_ms.push(started - accepted);
        } else {
            cut_ms.push(cut - accepted);
        }
        // Let the line finish and the script resume.
        wait_for(&store, |log| log.iter().find(|r| r.cue == cue && r.event == "finished").map(|r| r.seq));
    }
    // End the show the way an operator does, and wait for both processes.
    client.call("POST", "/v1/room/stop", None).expect("stop");
    let status = show.wait().expect("emcee run");
    assert!(status.success(), "emcee run: {status}");
    drop(nginx);

    let date = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    println!("rounds: {rounds} of each; unix time {date}\n");
    println!("| path | goal | p50 ms | p95 ms | max ms |");
    println!("|---|---|---|---|---|");
    for (name, goal, mut v) in [
        ("`say` accepted → first silent sample at the encoder (cut)", "≤ 200", cut_ms),
        ("`ask` accepted (FAQ hit) → first answer sample at the encoder", "≤ 500", answer_ms),
    ] {
        v.sort_unstable();
        println!("| {name} | {goal} | {} | {} | {} |", percentile(&v, 0.5), percentile(&v, 0.95), v[v.len() - 1]);
    }
}
