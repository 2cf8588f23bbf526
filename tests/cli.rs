//! The command line's contract for technicians: bad configurations are refused precisely, with
//! exit status 78, before anything is started.

use std::process::Command;

use anyhow::{ensure, Result};
use emcee_tests::{bin_dir, scratch_dir, write_secret};

const GOOD: &str = r##"[show]
script = "script.txt"

[video]
width = 640
height = 360
fps = 30

[stage]
socket = "stage.sock"

[secrets]
dir = "secrets"

[[output]]
url = "rtmp://127.0.0.1:1/live"
stream_key = "x"
"##;

#[test]
fn check_accepts_a_good_file_and_the_shipped_demo() -> Result<()> {
    let dir = scratch_dir("cli-good")?;
    std::fs::write(dir.join("script.txt"), "Hello.\n")?;
    std::fs::write(dir.join("good.toml"), GOOD)?;
    write_secret(&dir, "x", "a-stream-key")?;
    let demo = emcee_tests::workspace_root().join("examples/demo.toml");
    for file in [dir.join("good.toml"), demo] {
        let out = Command::new(bin_dir().join("emcee")).arg("check").arg(&file).output()?;
        ensure!(out.status.success(), "{}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

#[test]
fn voices_lists_the_installed_piper_voices_and_the_broken_ones() -> Result<()> {
    let demo = emcee_tests::workspace_root().join("examples/demo.toml");
    let out = Command::new(bin_dir().join("emcee")).args(["voices", "--config"]).arg(&demo).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    ensure!(text.contains("piper:en_US-joe-medium\tPiper, 22050 Hz"), "{text}");
    ensure!(text.contains("espeak-ng in "), "{text}");

    // A model without a usable config is listed as unusable, not skipped.
    let dir = scratch_dir("cli-voices")?;
    std::fs::create_dir_all(dir.join("voices"))?;
    std::fs::write(dir.join("voices/broken.onnx"), b"x")?;
    std::fs::write(dir.join("script.txt"), "Hello.\n")?;
    let config = GOOD.to_string() + "\n[speech]\nvoices = \"voices\"\n";
    write_secret(&dir, "x", "a-stream-key")?;
    std::fs::write(dir.join("v.toml"), config)?;
    let out = Command::new(bin_dir().join("emcee")).args(["voices", "--config"]).arg(dir.join("v.toml")).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success() && text.contains("piper:broken\tunusable:"), "{text}");
    Ok(())
}

#[test]
fn a_typo_gives_line_and_column_and_exit_78_and_starts_nothing() -> Result<()> {
    let dir = scratch_dir("cli-typo")?;
    std::fs::write(dir.join("script.txt"), "Hello.\n")?;
    let bad = GOOD.replace("fps = 30", "fsp = 30").replace("width = 640", "width = 641");
    let file = dir.join("bad.toml");
    std::fs::write(&file, bad)?;

    let out = Command::new(bin_dir().join("emcee")).arg("check").arg(&file).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(78), "exit {:?}", out.status);
    let expected_typo = format!("{}:7:1: unknown key `fsp` in [video]; did you mean `fps`?", file.display());
    ensure!(stderr.contains(&expected_typo), "stderr: {stderr}");
    ensure!(stderr.contains(":5:9: [video] 641x360"), "both errors at once: {stderr}");

    // `run` and the daemon refuse the same file the same way, before binding anything.
    for (program, args) in [("emcee", vec!["run", "--config"]), ("emceed", vec!["--config"])] {
        let out = Command::new(bin_dir().join(program)).args(&args).arg(&file).output()?;
        ensure!(out.status.code() == Some(78), "{program} exit {:?}", out.status);
        ensure!(String::from_utf8_lossy(&out.stderr).contains(&expected_typo), "{program} stderr");
    }
    ensure!(!dir.join("stage.sock").exists(), "a stage was left listening");
    Ok(())
}

#[test]
fn a_missing_script_is_a_configuration_error() -> Result<()> {
    let dir = scratch_dir("cli-noscript")?;
    std::fs::write(dir.join("show.toml"), GOOD)?;
    write_secret(&dir, "x", "a-stream-key")?;
    let out = Command::new(bin_dir().join("emcee")).arg("check").arg(dir.join("show.toml")).output()?;
    ensure!(out.status.code() == Some(78), "exit {:?}", out.status);
    ensure!(String::from_utf8_lossy(&out.stderr).contains("script.txt:1:1: cannot read the script"));
    Ok(())
}

#[test]
fn a_script_that_is_not_a_regular_file_is_refused_at_once() -> Result<()> {
    let dir = scratch_dir("cli-fifo")?;
    std::fs::write(dir.join("show.toml"), GOOD)?;
    write_secret(&dir, "x", "a-stream-key")?;
    ensure!(Command::new("mkfifo").arg(dir.join("script.txt")).status()?.success(), "mkfifo");
    let started = std::time::Instant::now();
    let out = Command::new(bin_dir().join("emcee")).arg("check").arg(dir.join("show.toml")).output()?;
    ensure!(started.elapsed() < std::time::Duration::from_secs(5), "emcee check hung on a FIFO");
    ensure!(out.status.code() == Some(78), "exit {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(stderr.contains("script.txt:1:1: cannot read the script: not a regular file"), "{stderr}");
    Ok(())
}
