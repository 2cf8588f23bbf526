//! Large catalogs: how long checking a products file takes and how much memory it needs, at
//! 1,000, 10,000 and 100,000 products, with a two-line script that names one of them.
//!
//! `cargo bench -p emcee-tests --bench catalog` prints a Markdown table. Each size runs in a
//! child process of its own, so its peak memory (VmHWM) is its own; "above text" is that peak
//! less the process after the file's text was made, i.e. what checking it costs.
//!
//! A second table runs `emceed` itself (room closed, no stage) on each catalog: how long it
//! takes to answer after it starts, how long a script push takes (checked against the whole
//! catalog and stored, off the show loop), the slowest status the show loop answered during
//! that push (the loop's hold for the swap-in), and the daemon's peak memory.
//!
//! Columns: the file's size; `check` — materials and script parsed and checked
//! (`Library::build`, what `emcee check` and a content change run); `answerer` — the question
//! index built from the products; `ask` — one question answered (mean of 20).

use std::path::Path;
use std::time::Instant;

use emcee_daemon::answer::Answerer;
use emcee_daemon::library::{Doc, DocName, Format, Library, Origin};
use emcee_protocol::{CameraPreset, Scene};
use emcee_tests::catalog;
use emcee_tests::daemon::{emcee, statuses_during, Daemon};

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: 0 kB");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn one(n: usize) {
    let doc = |name, format, body: String| Doc { name, format, origin: Origin::Request, body };
    let text = catalog(n);
    let script = format!("Welcome to the show.\nToday: {{product.name}}.<mark name=\"card:show:SKU-{:06}\"/>\n", n / 2);
    let script = script.replace("{product.name}", "the kettle");
    let library = Library {
        materials: doc(DocName::Materials, Format::Toml, text.clone()),
        script: doc(DocName::Script, Format::Lines, script),
    };
    let base = peak_kib();
    let scene = Scene { background_rgb: [0, 0, 0], camera: CameraPreset::Medium };
    let started = Instant::now();
    let built = library.build(scene, Path::new("/media")).expect("the catalog checks");
    let check = started.elapsed();
    let check_peak = peak_kib();
    let started = Instant::now();
    let answerer = Answerer::new(&built.materials.products, 0.5, "One moment.");
    let index = started.elapsed();
    let started = Instant::now();
    for k in 0..20 {
        let _ = answerer.answer(&format!("How long is the warranty of product {}?", k * n / 20));
    }
    let ask = started.elapsed() / 20;
    let answer_peak = peak_kib();
    println!(
        "| {n} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
        text.len() as f64 / 1e6,
        check.as_secs_f64() * 1e3,
        (check_peak - base) as f64 / 1024.0,
        index.as_secs_f64() * 1e3,
        (answer_peak.max(check_peak) - base) as f64 / 1024.0,
        ask.as_secs_f64() * 1e3,
    );
}

/// The daemon on an `n`-product catalog: one table row.
fn daemon_row(n: usize) -> anyhow::Result<()> {
    let dir = emcee_tests::scratch_dir(&format!("catalog-bench-{n}"))?;
    let lines = [format!("<mark name=\"card:show:SKU-{:06}\"/>Meet this product.", n / 2), "Bye.".to_string()];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let config = emcee_tests::write_show(&dir, &lines, &["rtmp://127.0.0.1:1/live/x".into()], "end")?;
    std::fs::write(dir.join("products.toml"), catalog(n))?;
    let text = std::fs::read_to_string(&config)?
        .replace("when_done = \"end\"", "when_done = \"end\"\nautostart = false")
        + "\n[content]\nproducts = \"products.toml\"\n";
    std::fs::write(&config, text)?;
    let started = Instant::now();
    let daemon = Daemon::spawn(&config)?;
    let boot = started.elapsed();
    let script = dir.join("push.txt");
    std::fs::write(&script, format!("<mark name=\"card:show:SKU-{:06}\"/>The last one.\nBye.\n", n - 1))?;
    let push = statuses_during(&config, || {
        emcee(&["content", "put", "script", script.to_str().unwrap_or_default()], &config)
    })?;
    anyhow::ensure!(push.result?.status.success(), "the push was refused");
    let slowest = push.statuses.iter().max().copied().unwrap_or_default();
    println!(
        "| {n} | {:.0} | {:.0} | {} | {:.1} | {} |",
        boot.as_secs_f64() * 1e3,
        push.took.as_secs_f64() * 1e3,
        push.statuses.len(),
        slowest.as_secs_f64() * 1e3,
        daemon.peak_rss_kib()? / 1024
    );
    daemon.stop()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args.iter().position(|a| a == "--one").and_then(|i| args.get(i + 1)) {
        one(n.parse().expect("--one N"));
        return;
    }
    println!("| products | file MB | check ms | check MB above text | answerer ms | peak MB above text | ask ms |");
    println!("|---|---|---|---|---|---|---|");
    let me = std::env::current_exe().expect("the bench's own path");
    for n in [1_000, 10_000, 100_000] {
        let status = std::process::Command::new(&me).args(["--one", &n.to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "the {n}-product run failed");
    }
    println!();
    println!("| products | emceed answers after ms | script push ms | statuses answered during the push | slowest status ms | emceed peak RSS MB |");
    println!("|---|---|---|---|---|---|");
    for n in [1_000, 10_000, 100_000] {
        daemon_row(n).expect("the daemon run");
    }
}
