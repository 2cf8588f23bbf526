//! The control channel's listening end: a Unix socket that only the control plane can use.
//!
//! Three locks, each enough on its own against another local user: the socket's directory
//! (the unit's runtime directory, 0750) and the socket (0660) admit only the stage's user and
//! group; the peer's uid (SO_PEERCRED) must be the stage's own or a named controller's; and
//! one controller at a time — a second connection is refused while one is live. A peer that
//! connects and says nothing is dropped after [`HANDSHAKE_PATIENCE`], so it cannot hold the
//! door shut either. There is no TCP listener.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;

/// One WebSocket connection on the control socket.
pub type Ws = WebSocketStream<UnixStream>;

/// How long a peer has to complete the WebSocket handshake.
pub const HANDSHAKE_PATIENCE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cannot listen on {path}: {source}")]
    Listen { path: PathBuf, source: std::io::Error },
    #[error("another stage already listens on {0}")]
    InUse(PathBuf),
    #[error("--controller {0}: no such user in /etc/passwd")]
    UnknownUser(String),
}

/// The listening socket; its file is removed when this is dropped.
pub struct Channel {
    listener: UnixListener,
    path: PathBuf,
    /// Peers allowed to drive the stage: the stage's own uid and the named controllers'.
    allowed: Vec<u32>,
}

impl Channel {
    /// Binds `path` (making its directory, private, when missing) for peers whose uid is ours
    /// or one of `controllers`.
    pub fn bind(path: &Path, controllers: &[u32]) -> Result<Self, ChannelError> {
        let failed = |source| ChannelError::Listen { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        if path.exists() {
            // A socket file nobody answers on is left over from a stage that died; one that
            // answers belongs to a running stage, which we must not steal it from.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ChannelError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(failed)?;
        }
        let listener = UnixListener::bind(path).map_err(failed)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(failed)?;
        let mut allowed = vec![rustix::process::getuid().as_raw()];
        allowed.extend_from_slice(controllers);
        Ok(Self { listener, path: path.to_path_buf(), allowed })
    }

    /// Accepts connections for ever, sending each peer that is allowed and completes the
    /// handshake in time to `incoming`.
    pub async fn serve(self, incoming: mpsc::Sender<Ws>) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match stream.peer_cred() {
                Ok(peer) if self.allowed.contains(&peer.uid()) => {}
                Ok(peer) => {
                    tracing::warn!(uid = peer.uid(), pid = ?peer.pid(), "refused a control connection from a user that may not drive the stage");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "refused a control connection whose peer is unknown");
                    continue;
                }
            }
            let incoming = incoming.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_PATIENCE, tokio_tungstenite::accept_async(stream)).await {
                    Ok(Ok(ws)) => {
                        let _ = incoming.send(ws).await;
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "control handshake failed"),
                    Err(_) => tracing::warn!("a control connection said nothing for {HANDSHAKE_PATIENCE:?}; dropped"),
                }
            });
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The uid of user `name`, from `/etc/passwd` (the appliance's users are system users made by
/// sysusers, always there).
pub fn uid_of(name: &str) -> Result<u32, ChannelError> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    uid_in(&passwd, name).ok_or_else(|| ChannelError::UnknownUser(name.to_string()))
}

fn uid_in(passwd: &str, name: &str) -> Option<u32> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name)).then(|| fields.nth(1)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_name() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nemcee:x:998:997::/var/lib/emcee:/usr/sbin/nologin\n";
        assert_eq!(uid_in(passwd, "emcee"), Some(998));
        assert_eq!(uid_in(passwd, "root"), Some(0));
        assert_eq!(uid_in(passwd, "emce"), None);
        assert_eq!(uid_in("broken", "broken"), None);
    }

    #[tokio::test]
    async fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
        let dir = std::env::temp_dir().join(format!("emcee-channel-{}", std::process::id()));
        let path = dir.join("sub/control.sock");
        let first = Channel::bind(&path, &[]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
        assert!(matches!(Channel::bind(&path, &[]), Err(ChannelError::InUse(_))));
        drop(first);
        assert!(!path.exists(), "the socket file goes with its channel");
        // A stale file (a stage that died without removing it) is replaced.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        Channel::bind(&path, &[]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_peer_that_says_nothing_does_not_hold_the_door() {
        let dir = std::env::temp_dir().join(format!("emcee-channel-idle-{}", std::process::id()));
        let path = dir.join("control.sock");
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(Channel::bind(&path, &[]).unwrap().serve(tx));
        let _idle = UnixStream::connect(&path).await.unwrap(); // connects, never speaks
        let started = std::time::Instant::now();
        let stream = UnixStream::connect(&path).await.unwrap();
        let client = tokio::spawn(tokio_tungstenite::client_async("ws://stage/control", stream));
        let accepted = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await;
        assert!(matches!(accepted, Ok(Some(_))), "the real controller waited on the idle one");
        assert!(client.await.unwrap().is_ok());
        assert!(started.elapsed() < HANDSHAKE_PATIENCE);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
