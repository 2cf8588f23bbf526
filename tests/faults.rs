//! Network faults between the publisher and a real nginx-rtmp, made by a loopback proxy:
//! a blackholed uplink, a reset connection, a restarted server, refusals (a stream name in use,
//! an unknown app, a key the platform's authorisation refuses). Each test
//! publishes real H.264 + AAC in real time through the stream crate's distributor, checks what
//! the server recorded with ffprobe, and that no task or file descriptor outlives the outputs.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use emcee_stream::record::{recordings as recordings_in, RecorderConfig};
use emcee_stream::rtmp::Output;
use emcee_stream::stats::SinkStats;
use emcee_tests::media::{runtime, Feed};
use emcee_tests::proxy::{Fault, FaultProxy};
use emcee_tests::{probe, scratch_dir, Nginx};

/// One fault test at a time: they count this process's open file descriptors.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Polls `ready` every 50 ms; the time it took, or an error after `limit`.
fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("{what}: not within {limit:?}")
}

fn publishing(s: &SinkStats) -> bool {
    s.state() == "publishing"
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn fd_list() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| format!("{:?}", std::fs::read_link(e.path()))).collect())
        .unwrap_or_default()
}

/// Nothing leaked by the outputs once the feed is finished: no task left on the runtime, no
/// file descriptor left open (`proxy`: its connections are closed first; they are this
/// process's descriptors too).
fn nothing_leaked(rt: &tokio::runtime::Runtime, fds_before: usize, proxy: Option<&FaultProxy>) -> Result<()> {
    if let Some(proxy) = proxy {
        proxy.reset_all();
    }
    wait_until(Duration::from_secs(3), "every output task ended", || rt.metrics().num_alive_tasks() == 0)
        .with_context(|| format!("{} tasks alive", rt.metrics().num_alive_tasks()))?;
    wait_until(Duration::from_secs(3), "file descriptors back to the start", || open_fds() <= fds_before)
        .with_context(|| format!("{} fds open, {fds_before} before: {:?}", open_fds(), fd_list()))?;
    Ok(())
}

/// A recording that decodes clean, starts on a keyframe, has a keyframe every 2 s and audio for
/// all of it (spans within 0.15 s: no audio lost). Its video span in seconds.
fn check_clean(file: &std::path::Path) -> Result<f64> {
    let errors = probe::decode_errors(file)?;
    ensure!(errors.trim().is_empty(), "{}: decode errors: {errors}", file.display());
    let video = probe::packets(file, "v")?;
    ensure!(video.first().is_some_and(|p| p.2), "{}: starts on a keyframe", file.display());
    let keys: Vec<f64> = video.iter().filter(|p| p.2).map(|p| p.0).collect();
    ensure!(keys.len() >= 2, "{}: keyframes {keys:?}", file.display());
    ensure!(keys.windows(2).all(|w| (w[1] - w[0] - 2.0).abs() < 0.05), "{}: keyframes at {keys:?}", file.display());
    let audio = probe::packets(file, "a")?;
    let video_span = video.last().map_or(0.0, |p| p.0 + p.1) - video[0].0;
    // FLV stores whole milliseconds, so packet durations read 21 ms: measure from timestamps.
    let audio_span = audio.last().map_or(0.0, |p| p.0 + 1024.0 / 48_000.0) - audio.first().map_or(0.0, |p| p.0);
    ensure!(
        (audio_span - video_span).abs() < 0.15,
        "{}: {video_span:.2} s video, {audio_span:.2} s audio",
        file.display()
    );
    Ok(video_span)
}

/// This process's resident memory, in kB.
fn resident_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[test]
fn a_blackholed_uplink_is_detected_within_10_s_and_recovers_while_the_other_outputs_never_notice() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("faults-blackhole")?;
    let nginx = Nginx::start(&dir)?;
    let proxy = FaultProxy::start(nginx.port)?;
    // Counted once a runtime exists: tokio opens a process-wide signal pipe with the first one.
    let rt = runtime();
    let fds_before = open_fds();
    // A third output is dead all along: nothing listens on its port.
    let dead = format!("rtmp://127.0.0.1:{}/live/dead", emcee_tests::free_port());
    let (feed, stats) = Feed::start(&[nginx.url("direct"), proxy.url("proxied"), dead], &rt)?;
    let (direct, proxied, dead) = (&stats[0], &stats[1], &stats[2]);
    wait_until(Duration::from_secs(5), "both outputs publishing", || publishing(direct) && publishing(proxied))?;
    std::thread::sleep(Duration::from_secs(3));

    proxy.set(Fault::Blackhole);
    let detected =
        wait_until(Duration::from_secs(15), "the blackhole detected", || proxied.state().starts_with("retrying"))?;
    ensure!(detected <= Duration::from_secs(10), "detected after {detected:?}");
    let error = proxied.last_error().unwrap_or_default();
    ensure!(error.contains("silent") || error.contains("blocked"), "last error: {error}");
    eprintln!("blackhole detected after {detected:?}: {error}");

    proxy.set(Fault::None);
    let back = wait_until(Duration::from_secs(20), "the proxied output back", || {
        publishing(proxied) && proxied.connects.load(Ordering::Relaxed) == 2
    })?;
    eprintln!("publishing again {back:?} after the link healed");
    std::thread::sleep(Duration::from_secs(4));
    feed.finish(&rt)?;
    nothing_leaked(&rt, fds_before, Some(&proxy))?;

    ensure!(dead.connects.load(Ordering::Relaxed) == 0 && dead.last_error().is_some(), "the dead output");
    // The healthy output never noticed.
    ensure!(direct.connects.load(Ordering::Relaxed) == 1, "direct output reconnected");
    ensure!(direct.dropped_packets.load(Ordering::Relaxed) == 0, "direct output dropped packets");
    ensure!(direct.bytes_acked.load(Ordering::Relaxed) > 100_000, "the server acknowledged the direct output");
    let video = check_clean(&nginx.recording("direct"))?;
    ensure!(video > 12.0, "direct: {video:.2} s");
    // The proxied output's new session is clean on its own.
    let video = check_clean(&nginx.recording("proxied"))?;
    ensure!(video > 3.0, "proxied: {video:.2} s after the reconnect");
    Ok(())
}

#[test]
fn three_destinations_with_one_dead_the_other_two_carry_a_clean_stream_throughout() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("faults-three")?;
    let nginx = Nginx::start(&dir)?;
    let rt = runtime();
    let fds_before = open_fds();
    let dead = format!("rtmp://127.0.0.1:{}/live/dead", emcee_tests::free_port());
    let (feed, stats) = Feed::start(&[nginx.url("one"), dead, nginx.url("two")], &rt)?;
    wait_until(Duration::from_secs(5), "both live outputs publishing", || {
        publishing(&stats[0]) && publishing(&stats[2])
    })?;
    std::thread::sleep(Duration::from_secs(10));
    // The leak check below counts these: one task per destination while the show runs.
    let tasks = rt.metrics().num_alive_tasks();
    ensure!(tasks >= 3, "{tasks} tasks alive for three destinations");
    feed.finish(&rt)?;
    nothing_leaked(&rt, fds_before, None)?;
    ensure!(
        stats[1].connects.load(Ordering::Relaxed) == 0 && stats[1].attempts.load(Ordering::Relaxed) >= 3,
        "the dead output kept trying"
    );
    for (key, s) in [("one", &stats[0]), ("two", &stats[2])] {
        ensure!(
            s.connects.load(Ordering::Relaxed) == 1 && s.dropped_packets.load(Ordering::Relaxed) == 0,
            "{key}: one session, nothing dropped"
        );
        let video = check_clean(&nginx.recording(key))?;
        ensure!(video > 9.5, "{key}: {video:.2} s");
    }
    Ok(())
}

#[test]
fn a_throttled_link_loses_video_to_keyframes_never_audio_and_the_other_output_never_notices() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("faults-throttled")?;
    let nginx = Nginx::start(&dir)?;
    let proxy = FaultProxy::start(nginx.port)?;
    let rt = runtime();
    let fds_before = open_fds();
    let (feed, stats) = Feed::start(&[nginx.url("direct"), proxy.url("slow")], &rt)?;
    let (direct, slow) = (&stats[0], &stats[1]);
    wait_until(Duration::from_secs(5), "both outputs publishing", || publishing(direct) && publishing(slow))?;
    let (sent, start) = (direct.bytes_sent.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let rate = (direct.bytes_sent.load(Ordering::Relaxed) - sent) as f64 / start.elapsed().as_secs_f64();

    // Half of what the stream needs: more than its audio, much less than audio and video.
    let resident_before = resident_kb();
    proxy.throttle((rate / 2.0) as u64);
    let mut worst_queue_ms = 0;
    let throttled = Instant::now();
    while throttled.elapsed() < Duration::from_secs(15) {
        worst_queue_ms = worst_queue_ms.max(slow.queued_ms());
        std::thread::sleep(Duration::from_millis(50));
    }
    let dropped = slow.dropped_packets.load(Ordering::Relaxed);
    let grown_kb = resident_kb().saturating_sub(resident_before);
    proxy.throttle(0);
    std::thread::sleep(Duration::from_secs(3));
    feed.finish(&rt)?;
    nothing_leaked(&rt, fds_before, Some(&proxy))?;
    eprintln!(
        "stream {:.0} kB/s, link {:.0} kB/s: {dropped} video packets dropped, queue at most {worst_queue_ms} ms, \
         resident memory +{grown_kb} kB",
        rate / 1000.0,
        rate / 2000.0
    );

    ensure!(dropped > 30, "video dropped on the slow link: {dropped}");
    // 700 ms, plus the wait for the next keyframe (GOP 2 s) that audio and keyframes then drain.
    ensure!(worst_queue_ms < 4_000, "the slow output's queue stays bounded: {worst_queue_ms} ms");
    // 15 s of a stream that does not fit its link: the queue, not the process, absorbs it.
    ensure!(grown_kb < 16 * 1024, "resident memory grew {grown_kb} kB while throttled");
    ensure!(
        slow.connects.load(Ordering::Relaxed) == 1,
        "the slow link was never taken for dead: {:?}",
        slow.last_error()
    );
    ensure!(
        direct.connects.load(Ordering::Relaxed) == 1 && direct.dropped_packets.load(Ordering::Relaxed) == 0,
        "direct output"
    );
    let video = check_clean(&nginx.recording("direct"))?;
    ensure!(video > 18.0, "direct: {video:.2} s");
    // What the slow link carried decodes clean (video resumes at keyframes) and kept all audio.
    check_clean(&nginx.recording("slow"))?;
    let audio_packets = |key: &str| probe::packets(&nginx.recording(key), "a").map(|p| p.len());
    let (slow_audio, direct_audio) = (audio_packets("slow")?, audio_packets("direct")?);
    let video_packets = |key: &str| probe::packets(&nginx.recording(key), "v").map(|p| p.len());
    let (slow_video, direct_video) = (video_packets("slow")?, video_packets("direct")?);
    eprintln!(
        "audio packets: slow {slow_audio}, direct {direct_audio}; video: slow {slow_video}, direct {direct_video}"
    );
    ensure!(slow_audio.abs_diff(direct_audio) <= 24, "audio lost on the slow link: {slow_audio} vs {direct_audio}");
    ensure!(slow_video + 30 <= direct_video, "video was dropped: {slow_video} vs {direct_video}");
    Ok(())
}

#[test]
fn a_restarted_server_gets_the_stream_back() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("faults-restart")?;
    let nginx = Nginx::start(&dir)?;
    let rt = runtime();
    let fds_before = open_fds();
    let (feed, stats) = Feed::start(&[nginx.url("restart")], &rt)?;
    let out = &stats[0];
    wait_until(Duration::from_secs(5), "publishing", || publishing(out))?;
    std::thread::sleep(Duration::from_secs(2));
    nginx.stop();
    wait_until(Duration::from_secs(10), "the loss noticed", || out.state().starts_with("retrying"))?;
    std::thread::sleep(Duration::from_secs(2));
    let nginx = Nginx::start_on(&dir, nginx.port)?;
    let back = wait_until(Duration::from_secs(20), "reconnected", || {
        publishing(out) && out.connects.load(Ordering::Relaxed) >= 2
    })?;
    eprintln!("server restart: publishing again {back:?} after it came back");
    std::thread::sleep(Duration::from_secs(5));
    feed.finish(&rt)?;
    nothing_leaked(&rt, fds_before, None)?;
    check_clean(&nginx.recording("restart"))?;
    Ok(())
}

#[test]
fn a_reset_connection_is_reconnected_at_once() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("faults-reset")?;
    let nginx = Nginx::start(&dir)?;
    let proxy = FaultProxy::start(nginx.port)?;
    let rt = runtime();
    let fds_before = open_fds();
    let (feed, stats) = Feed::start(&[proxy.url("reset")], &rt)?;
    let out = &stats[0];
    wait_until(Duration::from_secs(5), "publishing", || publishing(out))?;
    std::thread::sleep(Duration::from_secs(2));
    proxy.reset_all();
    let back = wait_until(Duration::from_secs(10), "reconnected", || {
        publishing(out) && out.connects.load(Ordering::Relaxed) == 2
    })?;
    ensure!(back < Duration::from_secs(5), "back after {back:?}");
    std::thread::sleep(Duration::from_secs(5));
    feed.finish(&rt)?;
    nothing_leaked(&rt, fds_before, Some(&proxy))?;
    let error = out.last_error().unwrap_or_default();
    ensure!(!error.is_empty(), "the reset is recorded as the last error");
    eprintln!("reset: back after {back:?} ({error})");
    check_clean(&nginx.recording("reset"))?;
    Ok(())
}

#[test]
fn a_stream_name_in_use_is_a_typed_refusal_and_waits_longer() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("faults-badname")?;
    let nginx = Nginx::start(&dir)?;
    let rt = runtime();
    let fds_before = open_fds();
    let (first, first_stats) = Feed::start(&[nginx.url("same")], &rt)?;
    wait_until(Duration::from_secs(5), "first publisher", || publishing(&first_stats[0]))?;
    let (second, second_stats) = Feed::start(&[nginx.url("same")], &rt)?;
    let out = &second_stats[0];
    wait_until(Duration::from_secs(10), "the refusal", || out.state().starts_with("retrying"))?;
    let error = out.last_error().unwrap_or_default();
    ensure!(error.contains("BadName"), "last error: {error}");
    let wait_ms = retry_wait_ms(out)?;
    ensure!(wait_ms >= 10_000, "waits {wait_ms} ms after BadName");
    second.finish(&rt)?;
    first.finish(&rt)?;
    nothing_leaked(&rt, fds_before, None)?;
    ensure!(first_stats[0].connects.load(Ordering::Relaxed) == 1, "the first publisher was never disturbed");
    Ok(())
}

/// The wait a `retrying in N ms …` state names.
fn retry_wait_ms(stats: &SinkStats) -> Result<u64> {
    let state = stats.state();
    state
        .strip_prefix("retrying in ")
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("state: {state}"))
}

/// An authorisation service (the test double of a platform's key check) that refuses every
/// publish with 403; counts the requests nginx sends it.
fn refusing_auth_service() -> Result<(u16, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = conn.write_all(b"HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        }
    });
    Ok((port, asked))
}

#[test]
fn an_unknown_app_and_a_refused_key_are_typed_refusals_that_wait_longer() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("faults-refused")?;
    let (auth_port, asked) = refusing_auth_service()?;
    let nginx = Nginx::start_guarded(&dir, &format!("http://127.0.0.1:{auth_port}/on_publish"))?;
    let rt = runtime();
    let fds_before = open_fds();
    let urls = [nginx.app_url("nosuch", "k"), nginx.app_url("guarded", "k"), nginx.url("fine")];
    let (feed, stats) = Feed::start(&urls, &rt)?;
    for s in &stats[..2] {
        wait_until(Duration::from_secs(10), "the refusal", || s.state().starts_with("retrying"))?;
    }
    let unknown_app = stats[0].last_error().unwrap_or_default();
    ensure!(unknown_app.contains("has no app `nosuch`"), "unknown app: {unknown_app}");
    let refused = stats[1].last_error().unwrap_or_default();
    ensure!(refused.contains("refused the stream key"), "refused key: {refused}");
    ensure!(asked.load(Ordering::Relaxed) >= 1, "nginx asked the authorisation service");
    for s in &stats[..2] {
        let wait_ms = retry_wait_ms(s)?;
        ensure!(wait_ms >= 10_000, "waits {wait_ms} ms after a refusal");
    }
    ensure!(publishing(&stats[2]), "the good destination publishes: {}", stats[2].state());
    feed.finish(&rt)?;
    nothing_leaked(&rt, fds_before, None)?;
    Ok(())
}

#[test]
fn sessions_rotate_at_keyframes_and_timestamps_cross_the_24_31_and_32_bit_wraps_cleanly() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("faults-wraps")?;
    let nginx = Nginx::start(&dir)?;
    let rt = runtime();
    // Each session starts 3 s before a wrap and crosses it.
    let near =
        |key: &str, wrap: u64| Output { first_timestamp_ms: (wrap - 3_000) as u32, ..Output::new(nginx.url(key)) };
    let rotating = Output { rotate_after: Duration::from_secs(3), ..Output::new(nginx.url("rotating")) };
    let outputs = [near("w24", 1 << 24), near("w31", 1 << 31), near("w32", 1 << 32), rotating];
    let (feed, stats) = Feed::start_outputs(&outputs, &rt)?;
    wait_until(Duration::from_secs(5), "all publishing", || stats.iter().all(|s| publishing(s)))?;
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    feed.finish(&rt)?;
    for key in ["w24", "w31", "w32"] {
        // nginx records what it received: a broken wrap shows as a jump or a decode error.
        let video = check_clean(&nginx.recording(key))?;
        ensure!(video > 6.0, "{key}: {video:.2} s");
        let pts: Vec<f64> = probe::packets(&nginx.recording(key), "v")?.iter().map(|p| p.0).collect();
        ensure!(pts.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] < 0.1), "{key}: video timestamps jump");
    }
    // Rotation: a new session about every 3 s, each starting on a keyframe (GOP 2 s: at 4 s).
    let rotating = &stats[3];
    let rotations = rotating.rotations.load(Ordering::Relaxed);
    let runtime_s = started.elapsed().as_secs();
    ensure!(
        rotations >= 1 && rotating.connects.load(Ordering::Relaxed) == rotations + 1,
        "{rotations} rotations in {runtime_s} s"
    );
    ensure!(rotating.last_error().is_none(), "a rotation is not an error: {:?}", rotating.last_error());
    // The last session is a clean stream of its own, from 0.
    let video = probe::packets(&nginx.recording("rotating"), "v")?;
    ensure!(video.first().is_some_and(|p| p.0 < 0.05 && p.2), "the last session starts at 0 on a keyframe");
    let errors = probe::decode_errors(&nginx.recording("rotating"))?;
    ensure!(errors.trim().is_empty(), "rotating: {errors}");
    eprintln!("{rotations} rotations in {runtime_s} s");
    Ok(())
}

#[test]
fn the_recorder_writes_playable_segments_and_keeps_the_directory_under_its_cap() -> Result<()> {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch_dir("recorder")?;
    let nginx = Nginx::start(&dir)?;
    let rt = runtime();
    let recordings = dir.join("recordings");
    // 2 s segments (one GOP each, about 40 kB here) and a cap of about two and a half.
    let config = RecorderConfig { dir: recordings.clone(), segment: Duration::from_secs(2), max_bytes: 100_000 };
    let (feed, stats) = Feed::start_with(&[Output::new(nginx.url("live"))], Some(config), &rt)?;
    std::thread::sleep(Duration::from_secs(11));
    feed.finish(&rt)?;
    let recorder = &stats[1];
    let segments = recorder.connects.load(Ordering::Relaxed);
    let mut files = recordings_in(&recordings);
    files.sort();
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    eprintln!("{segments} segments written, {} kept, {total} bytes", files.len());
    ensure!(segments >= 4, "{segments} segments in 11 s");
    ensure!((files.len() as u64) < segments, "the oldest were deleted: {files:?}");
    // The cap holds but for the segment being written when it was checked.
    let largest = files.iter().map(|(_, size)| *size).max().unwrap_or(0);
    ensure!(total <= 100_000 + largest, "{total} bytes kept");
    for (file, _) in &files {
        let errors = probe::decode_errors(file)?;
        ensure!(errors.trim().is_empty(), "{}: {errors}", file.display());
        let video = probe::packets(file, "v")?;
        ensure!(video.first().is_some_and(|p| p.2 && p.0 < 0.05), "{} starts at 0 on a keyframe", file.display());
        ensure!(!probe::packets(file, "a")?.is_empty(), "{} has audio", file.display());
    }
    ensure!(recorder.last_error().is_none(), "{:?}", recorder.last_error());
    Ok(())
}
