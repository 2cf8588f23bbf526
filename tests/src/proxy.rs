//! A loopback TCP proxy that makes network faults on demand, between a publisher and a real
//! ingest server (no root, no network namespace).
//!
//! - [`Fault::None`]: bytes pass both ways.
//! - [`Fault::Blackhole`]: every byte is read and thrown away, both ways. The publisher's writes
//!   still succeed (the kernel acknowledges them) but the server never answers: the dead uplink
//!   that only application-level liveness can see.
//! - [`FaultProxy::reset_all`]: every open connection is reset (RST), as a crashed middlebox or
//!   a restarted server does.
//! - [`FaultProxy::throttle`]: the uplink (publisher → server) carries at most so many bytes a
//!   second, behind a small receive buffer, as a congested access link does; 0 lifts it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    None = 0,
    Blackhole = 1,
}

/// The proxy's receive buffer: a link's queue is kilobytes, not the megabytes a loopback socket
/// would autotune to (which would hide a throttled link for minutes).
const RECEIVE_BUFFER: usize = 16 * 1024;

struct Shared {
    fault: AtomicU8,
    /// Uplink bytes per second; 0: unlimited.
    throttle: AtomicU64,
    open: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream_port`.
    pub fn start(upstream_port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        // Accepted sockets inherit it; set before any connection's handshake.
        socket2::SockRef::from(&listener).set_recv_buffer_size(RECEIVE_BUFFER)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            fault: AtomicU8::new(Fault::None as u8),
            throttle: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else { continue };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { continue };
                if let Ok(mut open) = accepting.open.lock() {
                    open.extend([c2, s2]);
                }
                pump(client.try_clone(), server.try_clone(), accepting.clone(), true);
                pump(server.try_clone(), client.try_clone(), accepting.clone(), false);
            }
        });
        Ok(Self { port, shared })
    }

    pub fn set(&self, fault: Fault) {
        self.shared.fault.store(fault as u8, Ordering::Relaxed);
    }

    /// Limits the uplink to `bytes_per_second` (0: unlimited).
    pub fn throttle(&self, bytes_per_second: u64) {
        self.shared.throttle.store(bytes_per_second, Ordering::Relaxed);
    }

    /// Resets every open connection (RST to both sides).
    pub fn reset_all(&self) {
        if let Ok(mut open) = self.shared.open.lock() {
            for stream in open.drain(..) {
                let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.reset_all();
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` → `to` until either side closes; `uplink`: the direction a throttle slows.
fn pump(from: std::io::Result<TcpStream>, to: std::io::Result<TcpStream>, shared: Arc<Shared>, uplink: bool) {
    let (Ok(mut from), Ok(mut to)) = (from, to) else { return };
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let rate = if uplink { shared.throttle.load(Ordering::Relaxed) } else { 0 };
            // Throttled: small reads, each paid for in time, so the rate holds within ~0.1 s.
            let want = if rate > 0 { (rate as usize / 10).clamp(512, buf.len()) } else { buf.len() };
            let n = match from.read(&mut buf[..want]) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if shared.fault.load(Ordering::Relaxed) == Fault::Blackhole as u8 {
                continue;
            }
            if rate > 0 {
                thread::sleep(std::time::Duration::from_secs_f64(n as f64 / rate as f64));
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}
