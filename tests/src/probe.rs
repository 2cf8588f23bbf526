//! Reading a recording back with the real ffprobe and ffmpeg.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

fn run(cmd: &mut Command) -> Result<(Vec<u8>, String)> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((out.stdout, String::from_utf8_lossy(&out.stderr).into_owned()))
}

pub fn streams(file: &Path) -> Result<Vec<Value>> {
    let (out, _) = run(Command::new("ffprobe").args(["-v", "error", "-show_streams", "-of", "json"]).arg(file))?;
    let json: Value = serde_json::from_slice(&out)?;
    Ok(json["streams"].as_array().cloned().unwrap_or_default())
}

/// (pts seconds, duration seconds, keyframe) of every packet of one stream (`v` or `a`).
pub fn packets(file: &Path, stream: &str) -> Result<Vec<(f64, f64, bool)>> {
    let (out, _) = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time,duration_time,flags"])
        .args(["-of", "csv=p=0"])
        .arg(file))?;
    let text = String::from_utf8(out)?;
    let mut packets = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 3 {
            continue;
        }
        let pts: f64 = f[0].parse().with_context(|| format!("pts in `{line}`"))?;
        let dur: f64 = f[1].parse().unwrap_or(0.0);
        packets.push((pts, dur, f[2].contains('K')));
    }
    Ok(packets)
}

/// Everything `ffmpeg -v error` says while decoding the whole file (empty when clean).
pub fn decode_errors(file: &Path) -> Result<String> {
    let (_, stderr) =
        run(Command::new("ffmpeg").args(["-nostdin", "-v", "error", "-i"]).arg(file).args(["-f", "null", "-"]))?;
    Ok(stderr)
}

/// The luma plane of every decoded video frame.
pub fn gray_frames(file: &Path, width: usize, height: usize) -> Result<Vec<Vec<u8>>> {
    let (out, _) = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "gray", "-"]))?;
    Ok(out.chunks_exact(width * height).map(<[u8]>::to_vec).collect())
}

/// The audio as mono 48 kHz samples.
pub fn mono_audio(file: &Path) -> Result<Vec<i16>> {
    let (out, _) = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", "48000", "-"]))?;
    Ok(out.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect())
}
