//! `[cloud]`: the fleet the appliance joins (present means it joins one).

use std::path::{Path, PathBuf};

use toml_edit::Table;
use url::Url;

use super::checker::Checker;

/// How the appliance reaches its fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudConfig {
    /// `wss://…` (or `ws://` to a loopback address, for tests).
    pub url: Url,
    /// A CA to trust besides the system's.
    pub ca_file: Option<PathBuf>,
    /// A one-time code to enrol with when the appliance has no identity yet (`emcee enrol`
    /// does the same by hand). One-time and short-lived, so not a secret worth a file.
    pub enrol_code: Option<String>,
    /// The appliance's name in the fleet (default: the host name).
    pub name: Option<String>,
}

impl CloudConfig {
    /// The device key (mode 0600) in the state directory.
    pub fn key_file(state_dir: &Path) -> PathBuf {
        state_dir.join("device.key")
    }

    /// The device id the cloud gave at enrolment.
    pub fn device_file(state_dir: &Path) -> PathBuf {
        state_dir.join("cloud-device")
    }
}

fn loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

pub(super) fn cloud(c: &mut Checker<'_>, cloud: Option<&Table>, base: &Path) -> Option<CloudConfig> {
    let table = cloud?;
    let Some((text, item)) = c.string(Some(table), "cloud", "url") else {
        c.error(None, "[cloud] needs url = \"wss://…\" (leave [cloud] out to run without a fleet)");
        return None;
    };
    let url = match Url::parse(text) {
        Ok(url) if url.scheme() == "wss" && url.host().is_some() => url,
        Ok(url) if url.scheme() == "ws" && loopback(&url) => url,
        Ok(url) if url.scheme() == "ws" => {
            c.error(item.span(), format!("[cloud] url = \"{text}\": ws:// only to a loopback address; use wss://"));
            return None;
        }
        Ok(_) | Err(_) => {
            c.error(item.span(), format!("[cloud] url = \"{text}\" is not a wss:// URL"));
            return None;
        }
    };
    let ca_file = c.string(Some(table), "cloud", "ca").map(|(s, _)| base.join(s));
    let enrol_code = c.string(Some(table), "cloud", "enrol_code").map(|(s, _)| s.to_string());
    let name = c.string(Some(table), "cloud", "name").map(|(s, _)| s.to_string());
    Some(CloudConfig { url, ca_file, enrol_code, name })
}
