//! The fleet wire: what the appliance and the cloud say to each other.
//!
//! A connection starts with the device naming itself ([`DeviceMessage::Hello`], or
//! [`DeviceMessage::Enrol`] once, with a one-time code), the cloud's random challenge, and the
//! device's signature of it ([`DeviceMessage::Proof`]); only then does the cloud say anything
//! about the fleet ([`CloudMessage::Welcome`]).
//!
//! The device shadow: the cloud writes the *desired* document, the device the *reported* one,
//! each with a version that only grows. After every (re)connect the device is sent the whole
//! desired document and applies only versions newer than the one it applied. A report names the
//! version it replaces; a stale one is refused ([`CloudMessage::Conflict`]), never merged.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The wire's version; a cloud refuses a device speaking another.
pub const FLEET_PROTOCOL: u32 = 1;

/// A document of the shadow and its version (0: never written).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Versioned {
    pub version: u64,
    pub doc: Value,
}

/// What the cloud asks the appliance to do now, carried out as the local API would.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum Command {
    Say { text: String },
    Ask { text: String },
    Start,
    Stop,
    Pause,
    Resume,
    Skip,
}

/// Appliance → cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceMessage {
    /// The first message on a connection of an enrolled device.
    Hello {
        protocol: u32,
        device: String,
        firmware: String,
    },
    /// The first message of a device not yet enrolled: its one-time code and new public key
    /// (hex); the cloud then challenges it like any device.
    Enrol {
        protocol: u32,
        code: String,
        public_key: String,
        name: String,
        firmware: String,
    },
    /// The cloud's challenge, signed with the device key (hex).
    Proof {
        signature: String,
    },
    /// The reported document, replacing version `base` (the version the device last saw).
    Report {
        base: u64,
        doc: Value,
    },
    /// A command carried out (or refused: `ok` false, `body.error` says why).
    Done {
        id: i64,
        ok: bool,
        body: Value,
    },
    /// Audit records from the device's outbox, in order, each with its `seq`; sent again until
    /// the cloud says they are stored (it keeps each `seq` once).
    Audit {
        records: Vec<Value>,
    },
    Ping {
        seq: u64,
    },
    Pong {
        seq: u64,
    },
}

/// Cloud → appliance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CloudMessage {
    /// Sign this (hex) to prove the device key.
    Challenge {
        nonce: String,
    },
    /// The device is who it says it is: its id (new after an enrolment), group, the whole
    /// desired document and the version of the reported one the cloud holds.
    Welcome {
        device: String,
        group: String,
        desired: Versioned,
        reported_version: u64,
    },
    /// The desired document changed.
    Desired {
        desired: Versioned,
    },
    /// A report was stored as `version`.
    Reported {
        version: u64,
    },
    /// A report's base was stale: the cloud holds `version`.
    Conflict {
        version: u64,
    },
    /// The device's audit records up to `seq` `through` are stored.
    AuditStored {
        through: i64,
    },
    Command {
        id: i64,
        command: Command,
    },
    /// Why the connection ends (a bad proof, a revoked device, a used code); the cloud closes.
    Refused {
        reason: String,
    },
    Ping {
        seq: u64,
    },
    Pong {
        seq: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_back_as_they_were_written() {
        let say = CloudMessage::Command { id: 7, command: Command::Say { text: "Hello".into() } };
        let json = serde_json::to_string(&say).unwrap();
        assert_eq!(json, r#"{"type":"command","id":7,"command":{"verb":"say","text":"Hello"}}"#);
        assert_eq!(serde_json::from_str::<CloudMessage>(&json).unwrap(), say);
        let report = DeviceMessage::Report { base: 3, doc: serde_json::json!({"room": "live"}) };
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<DeviceMessage>(&json).unwrap(), report);
        assert!(serde_json::from_str::<DeviceMessage>(r#"{"type":"report","base":-1,"doc":{}}"#).is_err());
    }
}
