//! `vswitch-cni`: what a container runtime runs to attach a container. A thin client:
//! it reads the runtime's environment and network configuration, runs a delegated
//! IPAM plugin where the configuration names one, and asks vswitchd (over its API
//! socket) to do the rest. It never touches the switch's tables.
use super::{
    api::*,
    spec::{self, code, CniError, NetConf},
};
use crate::{api::Request, cli::call_within};
use serde_json::Value;
use std::{
    io::{Read, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::Duration,
};

/// How long vswitchd may take before the runtime is told to try again later.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the runtime says in the environment (CNI_*).
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub command: String,
    pub container: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub path: String,
}

impl Invocation {
    pub fn from_env() -> Invocation {
        let get = |k: &str| std::env::var(k).unwrap_or_default();
        Invocation {
            command: get("CNI_COMMAND"),
            container: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
            path: get("CNI_PATH"),
        }
    }

    fn need(&self, what: &str, v: &str) -> Result<(), CniError> {
        if v.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("{what} is not set; a runtime sets it for {}", self.command),
            ));
        }
        Ok(())
    }
}

/// The plugin's main: prints the result or the error on stdout, as runtimes read it.
pub fn main() -> ExitCode {
    let inv = Invocation::from_env();
    let mut input = Vec::new();
    if inv.command != "VERSION" || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let _ = std::io::stdin().read_to_end(&mut input);
    }
    let mut out = std::io::stdout().lock();
    match run(&inv, &input) {
        Ok(Some(v)) => {
            let _ = writeln!(out, "{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(out, "{}", serde_json::to_string(&e).unwrap_or_default());
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn conf_of(input: &[u8]) -> Result<NetConf, CniError> {
    let conf: NetConf = serde_json::from_slice(input)
        .map_err(|e| CniError::new(code::DECODE_FAILURE, format!("cannot read the network configuration: {e}")))?;
    if !spec::SUPPORTED.contains(&conf.cni_version.as_str()) {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("cniVersion {:?} is not one this plugin speaks ({})", conf.cni_version, spec::SUPPORTED.join(", ")),
        ));
    }
    Ok(conf)
}

/// One invocation: the result to print, if any.
pub fn run(inv: &Invocation, input: &[u8]) -> Result<Option<Value>, CniError> {
    if inv.command == "VERSION" {
        let asked = serde_json::from_slice::<Value>(input).ok();
        let v = asked.as_ref().and_then(|v| v["cniVersion"].as_str()).unwrap_or_default();
        return Ok(Some(spec::version_result(v)));
    }
    let conf = conf_of(input)?;
    let v = conf.cni_version.clone();
    let tag = |e: CniError| CniError { cni_version: v.clone(), ..e };
    let vswitchd = Vswitchd::of(&conf);
    match inv.command.as_str() {
        "ADD" => add(inv, &conf, input, &vswitchd).map(Some),
        "DEL" => del(inv, &conf, input, &vswitchd).map(|()| None),
        "CHECK" => {
            if !spec::at_least(&v, "0.4.0") {
                return Err(tag(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!("CHECK needs cniVersion 0.4.0 or later, not {v}"),
                )));
            }
            check(inv, &conf, input, &vswitchd).map(|()| None)
        }
        "STATUS" => vswitchd
            .call(Request::Cni(CniRequest::CniList))
            .map(|_| None)
            .map_err(|e| CniError::new(code::NOT_AVAILABLE, e.msg)),
        "GC" => {
            let valid = conf.valid_attachments.clone().unwrap_or_default();
            vswitchd.call(Request::Cni(CniRequest::CniGc { network: conf.name.clone(), valid })).map(|_| None)
        }
        other => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK, STATUS, GC or VERSION"),
        )),
    }
    .map_err(tag)
}

/// vswitchd, as the configuration says where to find it.
struct Vswitchd {
    socket: PathBuf,
    timeout: Duration,
}

impl Vswitchd {
    fn of(conf: &NetConf) -> Vswitchd {
        let socket = conf
            .socket
            .clone()
            .or_else(|| std::env::var("VSWITCH_SOCKET").ok())
            .unwrap_or_else(|| crate::DEFAULT_SOCKET.into());
        let timeout = conf.timeout.filter(|t| *t > 0.0).map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
        Vswitchd { socket: socket.into(), timeout }
    }

    fn call(&self, req: Request) -> Result<Value, CniError> {
        match call_within(&self.socket, &req, Some(self.timeout)) {
            Err(e) => {
                Err(CniError::new(code::TRY_AGAIN_LATER, "vswitchd is not answering; try again later").details(e))
            }
            Ok(r) if r.ok => Ok(r.result.unwrap_or(Value::Null)),
            Ok(r) => Err(CniError::new(code::REFUSED, r.error.unwrap_or_else(|| "vswitchd refused".into()))),
        }
    }
}

/// The workload's identity: its pod, else the runtime's container name, else the
/// container id.
pub fn identity(inv: &Invocation) -> String {
    let args = spec::parse_args(&inv.args);
    let get = |k: &str| args.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).filter(|v| !v.is_empty());
    match (get("K8S_POD_NAMESPACE"), get("K8S_POD_NAME")) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name,
        _ => get("CONTAINER_NAME").unwrap_or_else(|| inv.container.clone()),
    }
}

fn key(inv: &Invocation, conf: &NetConf) -> Result<AttachmentKey, CniError> {
    inv.need("CNI_CONTAINERID", &inv.container)?;
    inv.need("CNI_IFNAME", &inv.ifname)?;
    Ok(AttachmentKey { network: conf.name.clone(), container: inv.container.clone(), ifname: inv.ifname.clone() })
}

/// vswitchd's answer to ADD or CHECK.
fn attach_result(v: Value) -> Result<AttachResult, CniError> {
    serde_json::from_value(v)
        .map_err(|e| CniError::new(code::DECODE_FAILURE, format!("cannot read vswitchd's reply: {e}")))
}

fn is_builtin(conf: &NetConf) -> bool {
    conf.ipam.as_ref().is_none_or(|i| i.kind.is_empty() || i.kind == "vswitch")
}

fn add(inv: &Invocation, conf: &NetConf, raw: &[u8], vswitchd: &Vswitchd) -> Result<Value, CniError> {
    let req = attach_request(inv, conf, raw)?;
    let builtin = matches!(req.ipam, Ipam::Vswitch { .. });
    match vswitchd.call(Request::Cni(CniRequest::CniAdd(req))) {
        Ok(v) => Ok(spec::add_result(&conf.cni_version, &attach_result(v)?)),
        Err(e) => {
            if !builtin {
                // The addresses the IPAM plugin gave are of no use now.
                let _ = delegate(inv, conf, raw, "DEL");
            }
            Err(e)
        }
    }
}

/// What an ADD asks vswitchd for: the configuration and CNI_ARGS read and checked, and
/// a delegated IPAM plugin's addresses.
pub(crate) fn attach_request(inv: &Invocation, conf: &NetConf, raw: &[u8]) -> Result<AttachRequest, CniError> {
    let key = key(inv, conf)?;
    inv.need("CNI_NETNS", &inv.netns)?;
    let vni = conf.vni.ok_or_else(|| {
        CniError::new(code::INVALID_CONFIG, "the network configuration needs \"vni\": the network to attach to")
    })?;
    let args = spec::parse_args(&inv.args);
    let arg = |k: &str| args.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
    let mut want: Vec<IpAddr> = Vec::new();
    let asked = conf
        .runtime_config
        .ips
        .iter()
        .cloned()
        .chain(arg("IP").into_iter().flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>()));
    for ip in asked {
        let addr = ip.split('/').next().unwrap_or_default();
        want.push(addr.parse().map_err(|e| CniError::new(code::INVALID_CONFIG, format!("IP {ip:?}: {e}")))?);
    }
    let mac = conf.runtime_config.mac.clone().or_else(|| arg("MAC"));
    let builtin = is_builtin(conf);
    let ipam = if builtin {
        let i = conf.ipam.clone().unwrap_or_default();
        Ipam::Vswitch { want, subnets: i.subnet.into_iter().chain(i.subnets).collect(), hold: i.hold }
    } else {
        let r = delegate(inv, conf, raw, "ADD")?.unwrap_or(Value::Null);
        let (ips, routes) = spec::ipam_result(&r).map_err(|e| CniError::new(code::DECODE_FAILURE, e))?;
        Ipam::Given { ips, routes }
    };
    let security_group = match &conf.security_group {
        Some(sg) => Some(security_group(sg)?),
        None => None,
    };
    let req = AttachRequest {
        key,
        vni,
        netns: inv.netns.clone(),
        identity: identity(inv),
        mtu: conf.mtu,
        mac,
        ipam,
        security_group,
        bandwidth: conf.runtime_config.bandwidth.clone(),
        port_mappings: conf.runtime_config.port_mappings.clone(),
    };
    Ok(req)
}

/// The rules of a security group, read from where the config says.
fn security_group(sg: &spec::SecurityGroupConf) -> Result<SecurityGroup, CniError> {
    let mut rules = sg.rules.clone();
    let file = match (&sg.rules_file, &sg.group) {
        (Some(f), None) => Some(PathBuf::from(f)),
        (None, Some(g)) => {
            if g.is_empty() || g.contains('/') {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!("securityGroup.group {g:?} is not a group name"),
                ));
            }
            let dir = Path::new(spec::GROUPS_DIR);
            let found = [dir.join(format!("{g}.yaml")), dir.join(format!("{g}.json"))].into_iter().find(|p| p.exists());
            Some(found.ok_or_else(|| {
                CniError::new(code::INVALID_CONFIG, format!("no security group {g:?} ({}/{g}.yaml)", spec::GROUPS_DIR))
            })?)
        }
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(CniError::new(code::INVALID_CONFIG, "securityGroup: give rulesFile or group, not both"));
        }
    };
    if let Some(f) = file {
        let text = std::fs::read_to_string(&f)
            .map_err(|e| CniError::new(code::IO_FAILURE, format!("security group {}: {e}", f.display())))?;
        let more: Vec<crate::acl::api::AclRuleSpec> = serde_yaml_ng::from_str(&text)
            .map_err(|e| CniError::new(code::INVALID_CONFIG, format!("security group {}: {e}", f.display())))?;
        rules.extend(more);
    }
    if rules.iter().any(|r| r.port.is_some() || r.vni.is_some()) {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "security group rules name no port or vni: they are the container's own port's",
        ));
    }
    Ok(SecurityGroup { rules, default: sg.default, stateful: sg.stateful.unwrap_or(true) })
}

fn del(inv: &Invocation, conf: &NetConf, raw: &[u8], vswitchd: &Vswitchd) -> Result<(), CniError> {
    let key = key(inv, conf)?;
    vswitchd.call(Request::Cni(CniRequest::CniDel(key)))?;
    if !is_builtin(conf) {
        delegate(inv, conf, raw, "DEL")?;
    }
    Ok(())
}

fn check(inv: &Invocation, conf: &NetConf, raw: &[u8], vswitchd: &Vswitchd) -> Result<(), CniError> {
    let key = key(inv, conf)?;
    let r = attach_result(vswitchd.call(Request::Cni(CniRequest::CniCheck(key)))?)?;
    if let Some(prev) = &conf.prev_result {
        let (ips, _) =
            spec::ipam_result(prev).map_err(|e| CniError::new(code::DECODE_FAILURE, format!("prevResult: {e}")))?;
        for ip in ips {
            if !r.ips.iter().any(|h| h.address == ip.address) {
                return Err(CniError::new(
                    code::REFUSED,
                    format!("prevResult names {} but the attachment does not have it", ip.address),
                ));
            }
        }
    }
    if !is_builtin(conf) {
        delegate(inv, conf, raw, "CHECK")?;
    }
    Ok(())
}

/// Runs the IPAM plugin the configuration names, as a runtime would run it: found in
/// CNI_PATH, the same environment with `command`, the same configuration on stdin.
fn delegate(inv: &Invocation, conf: &NetConf, raw: &[u8], command: &str) -> Result<Option<Value>, CniError> {
    let kind = conf.ipam.as_ref().map(|i| i.kind.clone()).unwrap_or_default();
    if kind.contains('/') {
        return Err(CniError::new(code::INVALID_CONFIG, format!("ipam type {kind:?} is not a plugin name")));
    }
    let bin = inv
        .path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(&kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            CniError::new(code::INVALID_CONFIG, format!("IPAM plugin {kind:?} is not in CNI_PATH ({})", inv.path))
        })?;
    let mut child = Command::new(&bin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("cannot run {}: {e}", bin.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(raw);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("running {}: {e}", bin.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(serde_json::from_str::<CniError>(&text).unwrap_or_else(|_| {
            CniError::new(code::IO_FAILURE, format!("IPAM plugin {kind} failed ({}): {text}", out.status))
        }));
    }
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| CniError::new(code::DECODE_FAILURE, format!("cannot read IPAM plugin {kind}'s result: {e}")))
}
