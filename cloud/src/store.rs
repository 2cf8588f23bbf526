//! The fleet in PostgreSQL: groups, one-time enrolment codes (stored as digests), devices with
//! their public keys and shadows, and commands. Every write that other instances must hear of is
//! followed by a NOTIFY on [`CHANNEL`].

use std::sync::Arc;
use std::time::Duration;

use emcee_fleet::wire::{Command, Versioned};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// The notification channel every instance listens on. Payloads: `desired DEVICE`,
/// `desired-group GROUP`, `command DEVICE`, `revoked DEVICE`.
pub const CHANNEL: &str = "emcee_fleet";

/// A command not delivered within this long is dropped: a `say` from an hour ago is no longer
/// what the operator wants heard.
pub const COMMAND_TTL_S: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("no device `{0}`")]
    NoDevice(String),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS enrol_codes (
    digest text PRIMARY KEY,
    group_name text NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    device text
);
CREATE TABLE IF NOT EXISTS devices (
    id text PRIMARY KEY,
    group_name text NOT NULL,
    name text NOT NULL,
    public_key text NOT NULL UNIQUE,
    firmware text NOT NULL DEFAULT '',
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    online boolean NOT NULL DEFAULT false,
    connection text,
    last_seen timestamptz,
    desired jsonb NOT NULL DEFAULT '{}',
    desired_version bigint NOT NULL DEFAULT 0,
    reported jsonb NOT NULL DEFAULT '{}',
    reported_version bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS devices_group ON devices (group_name);
CREATE TABLE IF NOT EXISTS commands (
    id bigserial PRIMARY KEY,
    device text NOT NULL REFERENCES devices (id),
    command jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    done_at timestamptz,
    ok boolean,
    result jsonb
);
CREATE TABLE IF NOT EXISTS audit (
    device text NOT NULL REFERENCES devices (id),
    seq bigint NOT NULL,
    record jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device, seq)
);
CREATE INDEX IF NOT EXISTS commands_pending ON commands (device) WHERE delivered_at IS NULL;
";

/// A connection that is made again when the database went away (a restart, a failover).
pub struct Db {
    conninfo: String,
    client: Mutex<Option<Arc<Client>>>,
}

impl Db {
    /// Connects and makes the schema (several instances starting at once take turns).
    pub async fn open(conninfo: &str) -> Result<Arc<Self>, StoreError> {
        let db = Arc::new(Self { conninfo: conninfo.into(), client: Mutex::new(None) });
        let client = db.client().await?;
        client
            .batch_execute(&format!("SELECT pg_advisory_lock(7610); {SCHEMA} SELECT pg_advisory_unlock(7610);"))
            .await?;
        Ok(db)
    }

    pub fn conninfo(&self) -> &str {
        &self.conninfo
    }

    /// The live client, connecting again if the last one closed.
    pub async fn client(&self) -> Result<Arc<Client>, StoreError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let (client, connection) = tokio_postgres::connect(&self.conninfo, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "database connection ended");
            }
        });
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    pub async fn notify(&self, payload: &str) -> Result<(), StoreError> {
        self.client().await?.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload]).await?;
        Ok(())
    }

    /// A one-time code for `group`, valid for `valid`; only its digest is kept.
    pub async fn add_enrol_code(&self, group: &str, digest: &str, valid: Duration) -> Result<(), StoreError> {
        let seconds = valid.as_secs_f64();
        self.client()
            .await?
            .execute(
                "INSERT INTO enrol_codes (digest, group_name, expires_at) \
                 VALUES ($1, $2, now() + make_interval(secs => $3))",
                &[&digest, &group, &seconds],
            )
            .await?;
        Ok(())
    }

    /// Uses the code with `digest` (once, before it expires) to enrol a device with
    /// `public_key` as `id`; its group, or `None` when the code is unknown, used or expired.
    pub async fn enrol(
        &self,
        digest: &str,
        id: &str,
        name: &str,
        public_key: &str,
    ) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "WITH code AS (UPDATE enrol_codes SET used_at = now(), device = $2 \
                   WHERE digest = $1 AND used_at IS NULL AND expires_at > now() RETURNING group_name) \
                 INSERT INTO devices (id, group_name, name, public_key) \
                 SELECT $2, group_name, $3, $4 FROM code RETURNING group_name",
                &[&digest, &id, &name, &public_key],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Keeps a device's audit records, each `seq` once (a batch sent again adds nothing).
    pub async fn store_audit(&self, device: &str, records: &[(i64, Value)]) -> Result<(), StoreError> {
        let seqs: Vec<i64> = records.iter().map(|r| r.0).collect();
        let docs: Vec<Value> = records.iter().map(|r| r.1.clone()).collect();
        self.client()
            .await?
            .execute(
                "INSERT INTO audit (device, seq, record) \
                 SELECT $1, s, r FROM unnest($2::bigint[], $3::jsonb[]) AS t(s, r) ON CONFLICT DO NOTHING",
                &[&device, &seqs, &docs],
            )
            .await?;
        Ok(())
    }

    /// A device's audit records after `since`, in order.
    pub async fn audit_of(&self, device: &str, since: i64, limit: i64) -> Result<Vec<Value>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT record FROM audit WHERE device = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&device, &since, &limit],
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    /// A device's public key, group and whether it is revoked.
    pub async fn device_key(&self, id: &str) -> Result<Option<DeviceKeyRow>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT public_key, group_name, revoked_at IS NOT NULL FROM devices WHERE id = $1", &[&id])
            .await?;
        Ok(row.map(|r| DeviceKeyRow { public_key: r.get(0), group: r.get(1), revoked: r.get(2) }))
    }

    /// The device joined through connection `connection` (unique over every instance).
    pub async fn joined(&self, id: &str, connection: &str, firmware: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE devices SET online = true, connection = $2, last_seen = now(), firmware = $3 WHERE id = $1",
                &[&id, &connection, &firmware],
            )
            .await?;
        Ok(())
    }

    /// Connection `connection` of the device ended; the device stays online if a newer one
    /// (on any instance) took its place.
    pub async fn left(&self, id: &str, connection: &str) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE devices SET online = false, last_seen = now() WHERE id = $1 AND connection = $2",
                &[&id, &connection],
            )
            .await?;
        Ok(())
    }

    pub async fn seen(&self, id: &str) -> Result<(), StoreError> {
        self.client().await?.execute("UPDATE devices SET last_seen = now() WHERE id = $1", &[&id]).await?;
        Ok(())
    }

    pub async fn desired(&self, id: &str) -> Result<Versioned, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt("SELECT desired, desired_version FROM devices WHERE id = $1", &[&id])
            .await?
            .ok_or_else(|| StoreError::NoDevice(id.into()))?;
        Ok(Versioned { doc: row.get(0), version: row.get::<_, i64>(1) as u64 })
    }

    pub async fn reported_version(&self, id: &str) -> Result<u64, StoreError> {
        let row = self.client().await?.query_opt("SELECT reported_version FROM devices WHERE id = $1", &[&id]).await?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    /// Stores the device's report if `base` is the version held: the new version, or `Err` with
    /// the version held (a conflict: nothing written).
    pub async fn report(&self, id: &str, base: u64, doc: &Value) -> Result<Result<u64, u64>, StoreError> {
        let client = self.client().await?;
        let base = base as i64;
        let stored = client
            .query_opt(
                "UPDATE devices SET reported = $3, reported_version = reported_version + 1, last_seen = now()                  WHERE id = $1 AND reported_version = $2 RETURNING reported_version",
                &[&id, &base, doc],
            )
            .await?;
        match stored {
            Some(row) => Ok(Ok(row.get::<_, i64>(0) as u64)),
            None => Ok(Err(self.reported_version(id).await?)),
        }
    }

    /// Replaces the desired document of one device (`Ok` its new version) and tells every
    /// instance.
    pub async fn set_desired(&self, id: &str, doc: &Value) -> Result<u64, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "UPDATE devices SET desired = $2, desired_version = desired_version + 1 WHERE id = $1                  RETURNING desired_version",
                &[&id, doc],
            )
            .await?
            .ok_or_else(|| StoreError::NoDevice(id.into()))?;
        self.notify(&format!("desired {id}")).await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Replaces the desired document of every device in `group`: how many.
    pub async fn set_group_desired(&self, group: &str, doc: &Value) -> Result<u64, StoreError> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE devices SET desired = $2, desired_version = desired_version + 1                  WHERE group_name = $1 AND revoked_at IS NULL",
                &[&group, doc],
            )
            .await?;
        self.notify(&format!("desired-group {group}")).await?;
        Ok(n)
    }

    /// Cuts a device off: its connections end and it cannot join again.
    pub async fn revoke(&self, id: &str) -> Result<(), StoreError> {
        let n = self
            .client()
            .await?
            .execute("UPDATE devices SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1", &[&id])
            .await?;
        if n == 0 {
            return Err(StoreError::NoDevice(id.into()));
        }
        self.notify(&format!("revoked {id}")).await
    }

    /// Queues `command` for a device and tells every instance; its id.
    pub async fn add_command(&self, id: &str, command: &Command) -> Result<i64, StoreError> {
        let json = serde_json::to_value(command).unwrap_or_default();
        let row = self
            .client()
            .await?
            .query_opt(
                "INSERT INTO commands (device, command) SELECT id, $2 FROM devices WHERE id = $1 RETURNING id",
                &[&id, &json],
            )
            .await?
            .ok_or_else(|| StoreError::NoDevice(id.into()))?;
        self.notify(&format!("command {id}")).await?;
        Ok(row.get(0))
    }

    /// Takes the device's commands not yet delivered (and not stale), marking them delivered, so
    /// that two instances never both deliver one.
    pub async fn take_commands(&self, id: &str) -> Result<Vec<(i64, Command)>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "UPDATE commands SET delivered_at = now() WHERE id IN (                    SELECT id FROM commands WHERE device = $1 AND delivered_at IS NULL                    AND created_at > now() - make_interval(secs => $2) ORDER BY id FOR UPDATE SKIP LOCKED)                  RETURNING id, command",
                &[&id, &(COMMAND_TTL_S as f64)],
            )
            .await?;
        let mut commands: Vec<(i64, Command)> = rows
            .into_iter()
            .filter_map(|r| Some((r.get(0), serde_json::from_value(r.get::<_, Value>(1)).ok()?)))
            .collect();
        commands.sort_by_key(|c| c.0);
        Ok(commands)
    }

    pub async fn command_done(&self, device: &str, id: i64, ok: bool, result: &Value) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "UPDATE commands SET done_at = now(), ok = $3, result = $4 WHERE id = $2 AND device = $1",
                &[&device, &id, &ok, result],
            )
            .await?;
        Ok(())
    }

    /// A command's outcome once the device has carried it out.
    pub async fn command_outcome(&self, id: i64) -> Result<Option<CommandOutcome>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT delivered_at IS NOT NULL, ok, result FROM commands WHERE id = $1 AND done_at IS NOT NULL",
                &[&id],
            )
            .await?;
        Ok(row.map(|r| CommandOutcome { ok: r.get::<_, Option<bool>>(1).unwrap_or(false), result: r.get(2) }))
    }

    /// Every device (or one), as the operator sees it.
    pub async fn devices(&self, only: Option<&str>) -> Result<Vec<DeviceRow>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, group_name, name, firmware, revoked_at IS NOT NULL, online,                    to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),                    desired_version, reported, reported_version                  FROM devices WHERE $1::text IS NULL OR id = $1 ORDER BY id",
                &[&only],
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeviceRow {
                id: r.get(0),
                group: r.get(1),
                name: r.get(2),
                firmware: r.get(3),
                revoked: r.get(4),
                online: r.get(5),
                last_seen: r.get(6),
                desired_version: r.get::<_, i64>(7) as u64,
                reported: r.get(8),
                reported_version: r.get::<_, i64>(9) as u64,
            })
            .collect())
    }
}

pub struct DeviceKeyRow {
    pub public_key: String,
    pub group: String,
    pub revoked: bool,
}

#[derive(Debug, Serialize)]
pub struct CommandOutcome {
    pub ok: bool,
    pub result: Option<Value>,
}

/// One line of `emcee-cloud devices`.
#[derive(Debug, Serialize)]
pub struct DeviceRow {
    pub id: String,
    pub group: String,
    pub name: String,
    pub firmware: String,
    pub revoked: bool,
    pub online: bool,
    pub last_seen: Option<String>,
    pub desired_version: u64,
    pub reported: Value,
    pub reported_version: u64,
}
