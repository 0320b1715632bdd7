//! One security-group rule: checked field by field where it enters, and turned into
//! its classifier form.
use super::api::{AclAction, AclRuleSpec};
use crate::ports::{api::PortRole, PortRef};
use ipnetwork::IpNetwork;
use pipelines::acl::{Family, Prefix, Rule, Verdict, ANY_PORT};

/// Rules in one set at most (each needs a counter slot).
pub const MAX_RULES: usize = dataplane::stats::ACL_COUNTERS;

pub(super) fn verdict(a: AclAction) -> Verdict {
    match a {
        AclAction::Allow => Verdict::Allow,
        AclAction::Deny => Verdict::Deny,
    }
}

fn prefix(field: &str, s: &str) -> Result<(Prefix, Family), String> {
    let net: IpNetwork = s
        .parse()
        .map_err(|e| format!("{field}: {s:?} is not an IPv4 or IPv6 prefix (e.g. 10.0.0.0/8, fd00::/64): {e}"))?;
    Ok(match net {
        IpNetwork::V4(n) => (Prefix::v4(u32::from(n.ip()), n.prefix()), Family::V4),
        IpNetwork::V6(n) => (Prefix::v6(u128::from(n.ip()), n.prefix()), Family::V6),
    })
}

fn protocol(s: &str) -> Result<u8, String> {
    match s {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        "icmpv6" => Ok(58),
        n => n
            .parse::<u8>()
            .map_err(|_| format!("proto: {n:?} is not a protocol; give tcp, udp, icmp, icmpv6 or a number 0-255")),
    }
}

fn port_range(field: &str, s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{field}: {s:?} is not a port or range (e.g. 22 or 1024-65535)");
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?),
        None => {
            let p = s.trim().parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("{field}: range {s:?} has its low end above its high end"));
    }
    Ok((lo, hi))
}

/// Checks a rule (its id aside) against the ports and networks there are, and returns
/// its classifier form (counter slot 0, set by the caller).
pub fn compile_rule(spec: &AclRuleSpec, ports: &[PortRef], has_network: &dyn Fn(u32) -> bool) -> Result<Rule, String> {
    match (&spec.port, spec.vni) {
        (Some(name), None) => {
            let p = ports.iter().find(|p| &p.name == name).ok_or_else(|| format!("port: no port named {name:?}"))?;
            if p.role != Some(PortRole::Vm) {
                return Err(format!("port: {name:?} is not a VM port; security groups apply to VM ports"));
            }
        }
        (None, Some(vni)) => {
            if !has_network(vni) {
                return Err(format!("vni: no network {vni}"));
            }
        }
        _ => return Err("give exactly one of --port NAME or --vni VNI".into()),
    }
    let mut family = Family::Any;
    let mut src = Prefix::ANY;
    let mut dst = Prefix::ANY;
    for (field, value, out) in [("src", &spec.src, &mut src), ("dst", &spec.dst, &mut dst)] {
        if let Some(s) = value {
            let (p, f) = prefix(field, s)?;
            if family != Family::Any && family != f {
                return Err(format!("{field}: {s:?} is not the same IP family as the other prefix"));
            }
            family = f;
            *out = p;
        }
    }
    let proto = spec.proto.as_deref().map(protocol).transpose()?;
    match (proto, family) {
        (Some(1), Family::V6) => return Err("proto: icmp is for IPv4; use icmpv6 with IPv6 prefixes".into()),
        (Some(58), Family::V4) => return Err("proto: icmpv6 is for IPv6; use icmp with IPv4 prefixes".into()),
        (Some(1), _) => family = Family::V4,
        (Some(58), _) => family = Family::V6,
        _ => {}
    }
    let l4 = matches!(proto, Some(6 | 17));
    let mut sport = ANY_PORT;
    let mut dport = ANY_PORT;
    for (field, value, out) in [("sport", &spec.sport, &mut sport), ("dport", &spec.dport, &mut dport)] {
        if let Some(s) = value {
            if !l4 {
                return Err(format!("{field}: port ranges need --proto tcp or udp"));
            }
            *out = port_range(field, s)?;
        }
    }
    if spec.icmp_type.is_some() && !matches!(proto, Some(1 | 58)) {
        return Err("icmp_type: needs --proto icmp or icmpv6".into());
    }
    Ok(Rule {
        id: spec.id.unwrap_or(0),
        priority: spec.priority,
        family,
        src,
        dst,
        proto,
        sport,
        dport,
        icmp_type: spec.icmp_type,
        verdict: verdict(spec.action),
        counter: 0,
    })
}
