//! The devices connected to this instance, and the database's notifications routed to them.
//! Notifications may be missed while the listening connection is down (a database restart):
//! when it comes back every connected device is told to look again ([`Nudge::Resync`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::store::CHANNEL;

/// What a device's connection is told to look at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nudge {
    Desired,
    Commands,
    Revoked,
    /// Notifications may have been missed: everything.
    Resync,
    /// A newer connection of the same device took over.
    Replaced,
}

struct Entry {
    connection: u64,
    group: String,
    nudge: mpsc::Sender<Nudge>,
}

#[derive(Default)]
pub struct Hub {
    devices: Mutex<HashMap<String, Entry>>,
    next_connection: Mutex<u64>,
}

impl Hub {
    /// Registers a device's connection (replacing an older one of the same device, which is
    /// told so); the connection's number, for [`Hub::leave`].
    pub fn join(&self, device: &str, group: &str, nudge: mpsc::Sender<Nudge>) -> u64 {
        let connection = {
            let mut next = self.next_connection.lock().unwrap_or_else(|e| e.into_inner());
            *next += 1;
            *next
        };
        let entry = Entry { connection, group: group.into(), nudge };
        let old = self.devices.lock().unwrap_or_else(|e| e.into_inner()).insert(device.into(), entry);
        if let Some(old) = old {
            let _ = old.nudge.try_send(Nudge::Replaced);
        }
        connection
    }

    /// Forgets the device's connection, unless a newer one took its place.
    pub fn leave(&self, device: &str, connection: u64) {
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        if devices.get(device).is_some_and(|e| e.connection == connection) {
            devices.remove(device);
        }
    }

    pub fn connected(&self) -> usize {
        self.devices.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn nudge(&self, device: &str, nudge: Nudge) {
        if let Some(entry) = self.devices.lock().unwrap_or_else(|e| e.into_inner()).get(device) {
            // A full queue already holds a nudge that makes the connection look at everything.
            let _ = entry.nudge.try_send(nudge);
        }
    }

    fn nudge_all(&self, group: Option<&str>, nudge: Nudge) {
        for entry in self.devices.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if group.is_none_or(|g| g == entry.group) {
                let _ = entry.nudge.try_send(nudge);
            }
        }
    }

    /// Routes one notification's payload.
    pub fn notified(&self, payload: &str) {
        match payload.split_once(' ') {
            Some(("desired", device)) => self.nudge(device, Nudge::Desired),
            Some(("desired-group", group)) => self.nudge_all(Some(group), Nudge::Desired),
            Some(("command", device)) => self.nudge(device, Nudge::Commands),
            Some(("revoked", device)) => self.nudge(device, Nudge::Revoked),
            _ => tracing::warn!(payload, "a notification this instance does not know"),
        }
    }

    /// Listens on the database's channel for as long as the process runs, connecting again after
    /// a restart (and then having every device look again).
    pub async fn listen(self: Arc<Self>, conninfo: String) {
        let mut first = true;
        loop {
            match tokio_postgres::connect(&conninfo, NoTls).await {
                Ok((client, mut connection)) => {
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let pump = tokio::spawn(async move {
                        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                        while let Some(Ok(message)) = messages.next().await {
                            if let AsyncMessage::Notification(n) = message {
                                let _ = tx.send(n.payload().to_string());
                            }
                        }
                    });
                    if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        tracing::warn!(error = %e, "cannot listen for fleet changes");
                    } else {
                        if !first {
                            self.nudge_all(None, Nudge::Resync);
                        }
                        first = false;
                        tracing::info!("listening for fleet changes");
                        while let Some(payload) = rx.recv().await {
                            self.notified(&payload);
                        }
                    }
                    pump.abort();
                    tracing::warn!("the database's notifications stopped; listening again");
                }
                Err(e) => tracing::warn!(error = %e, "cannot reach the database to listen"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
