//! The CNI specification's JSON (https://www.cni.dev/docs/spec/), as far as the plugin
//! reads and writes it: the network configuration a runtime hands over, results in the
//! version the runtime asked for, and errors. Written here: no maintained crate spells
//! 1.1.
use super::api::{AttachResult, IpConfig, Route, ValidAttachment};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The versions this plugin speaks, oldest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The spec's well-known error codes.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    /// Ours (100 and up are the plugin's): vswitchd refused the request.
    pub const REFUSED: u32 = 100;
}

/// A network configuration as the runtime passes it on stdin (one plugin's part of a
/// conflist, with `name` and `cniVersion` filled in). Fields of other plugins and
/// capabilities we do not use are ignored, as the spec asks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub cni_version: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The tenant network to attach to.
    #[serde(default)]
    pub vni: Option<u32>,
    #[serde(default)]
    pub mtu: Option<u16>,
    /// vswitchd's API socket, where not the default.
    #[serde(default)]
    pub socket: Option<String>,
    /// Seconds to wait for vswitchd before answering "try again later".
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default)]
    pub ipam: Option<IpamConf>,
    /// The container port's security group.
    #[serde(default)]
    pub security_group: Option<SecurityGroupConf>,
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(default)]
    pub runtime_config: RuntimeConfig,
    #[serde(default)]
    pub prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConf {
    #[serde(rename = "type", default)]
    pub kind: String,
    /// For the built-in IPAM: subnets to lease from instead of the network's gateway's.
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Seconds a deleted workload's address stays reserved for it (default a day).
    #[serde(default)]
    pub hold: Option<u64>,
}

/// `securityGroup`: rules written in the config, a rules file, or a named group (a file
/// in `GROUPS_DIR`); rules as `vswitchctl acl` takes them, without the port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityGroupConf {
    #[serde(default)]
    pub rules: Vec<crate::acl::api::AclRuleSpec>,
    #[serde(default)]
    pub rules_file: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    /// What the port does with what no rule matched (default allow).
    #[serde(default)]
    pub default: Option<crate::acl::api::AclAction>,
    /// Default true.
    #[serde(default)]
    pub stateful: Option<bool>,
}

/// Where named security groups live: `NAME.yaml` (or `.json`), a list of rules.
pub const GROUPS_DIR: &str = "/etc/vswitch/security-groups";

/// The capabilities the runtime filled in (`runtimeConfig`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// `ips`: addresses asked for, ADDRESS or ADDRESS/LEN.
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub bandwidth: Option<super::api::Bandwidth>,
    #[serde(default)]
    pub port_mappings: Vec<super::api::PortMapping>,
}

/// CNI_ARGS: `K1=V1;K2=V2`.
pub fn parse_args(s: &str) -> Vec<(String, String)> {
    s.split(';').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.trim().into(), v.trim().into())).collect()
}

/// Whether version `v` is at least `min` (both as the spec writes them).
pub fn at_least(v: &str, min: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(v) >= parse(min)
}

/// A CNI error, as the plugin prints it on stdout (and exits 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniError {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError { cni_version: "1.1.0".into(), code, msg: msg.into(), details: String::new() }
    }

    pub fn details(mut self, d: impl Into<String>) -> CniError {
        self.details = d.into();
        self
    }
}

/// VERSION's answer.
pub fn version_result(asked: &str) -> Value {
    json!({"cniVersion": if asked.is_empty() { "1.1.0" } else { asked }, "supportedVersions": SUPPORTED})
}

/// ADD's result in version `v`: the host end and the container's interface, its
/// addresses (on interface 1, the container's) and routes.
pub fn add_result(v: &str, r: &AttachResult) -> Value {
    let mut container = json!({"name": r.ifname, "mac": r.mac, "sandbox": r.netns});
    let mut host = json!({"name": r.host_iface, "mac": r.host_mac});
    if at_least(v, "1.1.0") {
        container["mtu"] = json!(r.mtu);
        host["mtu"] = json!(r.mtu);
    }
    let ips: Vec<Value> = r
        .ips
        .iter()
        .map(|ip| {
            let mut o = json!({"address": ip.address, "interface": 1});
            if let Some(g) = ip.gateway {
                o["gateway"] = json!(g.to_string());
            }
            if !at_least(v, "1.0.0") {
                o["version"] = json!(if ip.address.contains(':') { "6" } else { "4" });
            }
            o
        })
        .collect();
    let routes: Vec<Value> = r
        .routes
        .iter()
        .map(|rt| match rt.gw {
            Some(g) => json!({"dst": rt.dst, "gw": g.to_string()}),
            None => json!({"dst": rt.dst}),
        })
        .collect();
    json!({"cniVersion": v, "interfaces": [host, container], "ips": ips, "routes": routes, "dns": {}})
}

/// The addresses and routes of an IPAM plugin's result (any version).
pub fn ipam_result(v: &Value) -> Result<(Vec<IpConfig>, Vec<Route>), String> {
    let ips = v["ips"].as_array().ok_or("the IPAM result has no \"ips\"")?;
    let mut out = Vec::new();
    for ip in ips {
        let address = ip["address"].as_str().ok_or("an IPAM result address is not a string")?.to_string();
        address.parse::<ipnetwork::IpNetwork>().map_err(|e| format!("IPAM result address {address:?}: {e}"))?;
        let gateway = match ip["gateway"].as_str() {
            Some(g) => Some(g.parse().map_err(|e| format!("IPAM result gateway {g:?}: {e}"))?),
            None => None,
        };
        out.push(IpConfig { address, gateway });
    }
    let mut routes = Vec::new();
    for r in v["routes"].as_array().into_iter().flatten() {
        let dst = r["dst"].as_str().ok_or("an IPAM result route has no dst")?.to_string();
        dst.parse::<ipnetwork::IpNetwork>().map_err(|e| format!("IPAM result route {dst:?}: {e}"))?;
        let gw = match r["gw"].as_str() {
            Some(g) => Some(g.parse().map_err(|e| format!("IPAM result route gateway {g:?}: {e}"))?),
            None => None,
        };
        routes.push(Route { dst, gw });
    }
    Ok((out, routes))
}
