//! systemd's notify protocol (sd_notify): a datagram to `$NOTIFY_SOCKET`. A no-op elsewhere.
//! `emcee run` gives its children a notify socket of its own, so the same messages drive the
//! same rules (ready, watchdog) on a developer's machine as under systemd.
//!
//! The socket is opened once and kept: a process short of file descriptors (a flood of slow
//! API clients) still reaches its watchdog.

use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// The datagram socket every notification leaves through, made on first use.
fn socket() -> Option<&'static UnixDatagram> {
    static SOCKET: OnceLock<Option<UnixDatagram>> = OnceLock::new();
    SOCKET.get_or_init(|| UnixDatagram::unbound().ok()).as_ref()
}

/// Sends `state` (e.g. `READY=1`, `WATCHDOG=1`) if a supervisor asked for notifications.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Some(socket) = socket() else { return };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(name) = bytes.strip_prefix(b"@") {
        // Abstract socket namespace.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name).and_then(|a| socket.send_to_addr(state.as_bytes(), &a))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Half the watchdog interval the supervisor set (`WATCHDOG_USEC`), if any: how often to ping.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("emcee-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify("READY=1");
        notify("WATCHDOG=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1", "the kept socket sends again");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
