//! Declarative configuration: a whole desired state (what `dump` prints, what the state
//! file holds) is validated as one, compared with the running one, and the difference
//! is what `apply` changes.
pub mod api;
pub mod cli;

use crate::{
    feature::Feature,
    overlay::Overlay,
    ports::{
        api::{PortRole, PortSpec},
        validate, PortRef,
    },
    state::{DesiredState, STATE_FORMAT},
};
use std::collections::{BTreeMap, BTreeSet};

/// How the features see ports that exist only as specs (not running yet).
pub fn refs_of<'a>(specs: impl IntoIterator<Item = &'a PortSpec>) -> Vec<PortRef> {
    specs.into_iter().map(PortRef::of_spec).collect()
}

/// Validates `s` on its own, as if every entry were added in dependency order, and
/// returns it normalised (MACs in canonical form) with the overlay it describes. The
/// error names the entry and the field.
pub fn validate_state(s: &DesiredState, workers: &[u32]) -> Result<(DesiredState, Overlay), String> {
    if s.format != STATE_FORMAT {
        return Err(format!("format: this vswitchd reads format {STATE_FORMAT}, the file says {}", s.format));
    }
    let mut ov = Overlay::default();
    for n in &s.networks {
        ov.network_add(n.clone()).map_err(|e| format!("networks (vni {}): {e}", n.vni))?;
    }
    let mut seen: Vec<PortSpec> = Vec::new();
    for p in &s.ports {
        validate::port_spec(p, &seen, workers).map_err(|e| format!("ports ({}): {e}", p.name))?;
        ov.check_port(p, &refs_of(&seen)).map_err(|e| format!("ports ({}): {e}", p.name))?;
        seen.push(p.clone());
    }
    let refs = refs_of(&s.ports);
    if let Some(v) = &s.vtep {
        ov.vtep_set(v.clone(), &refs).map_err(|e| format!("vtep: {e}"))?;
    }
    for f in &s.fib {
        ov.fib_add(f.clone(), &refs).map_err(|e| format!("fib ({} {}): {e}", f.vni, f.mac))?;
    }
    for n in &s.neighbours {
        ov.neigh_add(n.clone()).map_err(|e| format!("neighbours ({}): {e}", n.ip))?;
    }
    let mut paired = BTreeSet::new();
    for x in &s.xconnects {
        for p in [&x.a, &x.b] {
            if !s.ports.iter().any(|q| &q.name == p) {
                return Err(format!("xconnects ({} {}): no port named {p:?}", x.a, x.b));
            }
            if !paired.insert(p.clone()) {
                return Err(format!("xconnects ({} {}): port {p:?} is in two cross-connects", x.a, x.b));
            }
        }
        if x.a == x.b {
            return Err(format!("xconnects ({} {}): a port cannot be cross-connected to itself", x.a, x.b));
        }
    }
    let mut acls = crate::acl::Acl::default();
    acls.replace(s.acl.clone(), BTreeMap::new(), &refs, &|v| ov.has_network(v)).map_err(|e| format!("acl {e}"))?;
    for (port, action) in &s.acl_defaults {
        acls.set_default(port, *action, &refs).map_err(|e| format!("acl_defaults ({port}): {e}"))?;
    }
    let mut qos = crate::qos::Qos::default();
    qos.replace(s.qos.clone(), &refs)?;
    let mut ct = crate::conntrack::Conntrack::default();
    ct.replace(s.stateful.clone(), s.conntrack_timeouts.clone(), &refs)?;
    let (networks, vtep, fib, neighbours) = ov.desired();
    let norm = DesiredState {
        format: STATE_FORMAT,
        ports: s.ports.clone(),
        xconnects: s.xconnects.clone(),
        networks,
        vtep,
        fib,
        neighbours,
        acl: acls.specs(),
        acl_defaults: acls.defaults(),
        qos: qos.specs(None),
        sflow: s.sflow.clone(),
        stateful: ct.specs(),
        conntrack_timeouts: ct.timeouts(),
        endpoints: Vec::new(),
        services: Vec::new(),
        attachments: Vec::new(),
        leases: Vec::new(),
        cluster: s.cluster.clone(),
    };
    if let Some(sf) = &s.sflow {
        crate::sflow::agent::validate(sf).map_err(|e| format!("sflow: {e}"))?;
    }
    let has_network = |v: u32| ov.has_network(v);
    let vtep_ip = ov.vtep_ip();
    let ctx = crate::feature::Ctx { ports: &refs, has_network: &has_network, vtep_ip, shared: None };
    let mut eps = crate::endpoints::Endpoints::default();
    eps.adopt(s, &ctx)?;
    let mut services = crate::services::Services::default();
    services.adopt(s, &ctx)?;
    let mut cni = crate::cni::Cni::default();
    cni.adopt(s, &ctx)?;
    let mut norm = norm;
    eps.desired(&mut norm);
    services.desired(&mut norm);
    cni.desired(&mut norm);
    Ok((norm, ov))
}

/// Does changing `old` into `new` need the device detached and attached again?
/// (Role and VNI are only the switch's view of the port.)
pub fn needs_new_device(old: &PortSpec, new: &PortSpec) -> bool {
    (&old.devargs, old.queues, &old.cores, old.mtu) != (&new.devargs, new.queues, &new.cores, new.mtu)
}

fn describe_port(p: &PortSpec) -> String {
    let mut s = p.devargs.clone();
    match (p.role, p.vni) {
        (Some(PortRole::Vm), Some(v)) => s += &format!(" role vm vni {v}"),
        (Some(PortRole::Uplink), _) => s += " role uplink",
        _ => {}
    }
    if let Some(q) = p.queues {
        s += &format!(" queues {q}");
    }
    if let Some(m) = p.mtu {
        s += &format!(" mtu {m}");
    }
    if !p.admin.is_up() {
        s += " admin down";
    }
    s
}

fn keyed<K: Ord, V: Clone>(items: &[V], key: impl Fn(&V) -> K) -> BTreeMap<K, V> {
    items.iter().map(|v| (key(v), v.clone())).collect()
}

/// Compares two entry lists by key: "+" added, "-" removed, "~" changed.
fn diff_list<K: Ord + Clone, V: Clone + PartialEq>(
    out: &mut Vec<String>,
    what: &str,
    old: &[V],
    new: &[V],
    key: impl Fn(&V) -> K,
    name: impl Fn(&K) -> String,
    show: impl Fn(&V) -> String,
) {
    let (o, n) = (keyed(old, &key), keyed(new, &key));
    for (k, v) in &o {
        match n.get(k) {
            None => out.push(format!("- {what} {}", name(k))),
            Some(w) if w != v => out.push(format!("~ {what} {}: {} -> {}", name(k), show(v), show(w))),
            _ => {}
        }
    }
    for (k, v) in &n {
        if !o.contains_key(k) {
            out.push(format!("+ {what} {} {}", name(k), show(v)).trim_end().to_string());
        }
    }
}

/// What applying `new` over `old` changes, one line per entry.
pub fn diff(old: &DesiredState, new: &DesiredState) -> Vec<String> {
    let mut out = Vec::new();
    diff_list(&mut out, "port", &old.ports, &new.ports, |p| p.name.clone(), |k| k.clone(), describe_port);
    diff_list(
        &mut out,
        "network",
        &old.networks,
        &new.networks,
        |n| n.vni,
        |k| k.to_string(),
        |n| serde_json::to_string(n).unwrap_or_default(),
    );
    match (&old.vtep, &new.vtep) {
        (Some(a), Some(b)) if a != b => out.push(format!(
            "~ vtep: {} -> {}",
            serde_json::to_string(a).unwrap_or_default(),
            serde_json::to_string(b).unwrap_or_default()
        )),
        (Some(_), None) => out.push("- vtep".into()),
        (None, Some(b)) => out.push(format!("+ vtep {}", serde_json::to_string(b).unwrap_or_default())),
        _ => {}
    }
    diff_list(
        &mut out,
        "fib",
        &old.fib,
        &new.fib,
        |f| (f.vni, f.mac.clone()),
        |k| format!("{} {}", k.0, k.1),
        |f| match (&f.port, f.vtep) {
            (Some(p), _) => format!("port {p}"),
            (None, Some(ip)) => format!("vtep {ip}"),
            _ => String::new(),
        },
    );
    diff_list(&mut out, "neigh", &old.neighbours, &new.neighbours, |n| n.ip, |k| k.to_string(), |n| n.mac.clone());
    diff_list(
        &mut out,
        "acl",
        &old.acl,
        &new.acl,
        |r| r.id.unwrap_or(0),
        |k| k.to_string(),
        |r| serde_json::to_string(r).unwrap_or_default(),
    );
    let defaults =
        |d: &std::collections::BTreeMap<String, crate::acl::api::AclAction>| -> Vec<(String, crate::acl::api::AclAction)> {
            d.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
    diff_list(
        &mut out,
        "acl default",
        &defaults(&old.acl_defaults),
        &defaults(&new.acl_defaults),
        |d| d.0.clone(),
        |k| k.clone(),
        |d| format!("{:?}", d.1).to_lowercase(),
    );
    if old.sflow != new.sflow {
        out.push(format!(
            "~ sflow: {} -> {}",
            serde_json::to_string(&old.sflow).unwrap_or_default(),
            serde_json::to_string(&new.sflow).unwrap_or_default()
        ));
    }
    diff_list(
        &mut out,
        "qos",
        &old.qos,
        &new.qos,
        |q| q.port.clone(),
        |k| k.clone(),
        |q| serde_json::to_string(q).unwrap_or_default(),
    );
    diff_list(
        &mut out,
        "stateful",
        &old.stateful,
        &new.stateful,
        |s| s.port.clone(),
        |k| k.clone(),
        |s| serde_json::to_string(s).unwrap_or_default(),
    );
    if old.conntrack_timeouts != new.conntrack_timeouts {
        out.push(format!(
            "~ conntrack timeouts: {} -> {}",
            serde_json::to_string(&old.conntrack_timeouts).unwrap_or_default(),
            serde_json::to_string(&new.conntrack_timeouts).unwrap_or_default()
        ));
    }
    diff_list(
        &mut out,
        "xconnect",
        &old.xconnects,
        &new.xconnects,
        |x| (x.a.clone(), x.b.clone()),
        |k| format!("{} {}", k.0, k.1),
        |_| String::new(),
    );
    diff_list(
        &mut out,
        "service",
        &old.services,
        &new.services,
        |s| s.name.clone(),
        |k| k.clone(),
        |s| format!("{} {} {} -> {}", s.vni, s.proto, s.vip, s.backends.join(",")),
    );
    diff_list(
        &mut out,
        "endpoint",
        &old.endpoints,
        &new.endpoints,
        |e| (e.vni, e.ip),
        |k| format!("{} {}", k.0, k.1),
        |e| match (&e.port, e.vtep) {
            (Some(p), _) => format!("{} port {p}", e.mac),
            (None, Some(v)) => format!("{} vtep {v}", e.mac),
            _ => e.mac.clone(),
        },
    );
    if old.cluster != new.cluster {
        let rev = |c: &Option<crate::cluster::owned::Owned>| c.as_ref().map_or(0, |c| c.revision);
        out.push(format!("~ cluster's entries (shared revision {} -> {})", rev(&old.cluster), rev(&new.cluster)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::api::{FibSpec, NetworkSpec};

    fn state() -> DesiredState {
        let mut s = DesiredState::new();
        s.networks.push(NetworkSpec {
            vni: 100,
            name: None,
            max_macs: None,
            aging: None,
            flood_vteps: vec![],
            gateway: vec![],
            snat: false,
        });
        s.ports.push(PortSpec {
            name: "vm1".into(),
            devargs: "net_null0".into(),
            queues: None,
            cores: None,
            mtu: None,
            role: Some(PortRole::Vm),
            vni: Some(100),
            admin: Default::default(),
        });
        s.fib.push(FibSpec { vni: 100, mac: "02:00:00:00:00:0A".into(), port: Some("vm1".into()), vtep: None });
        s
    }

    #[test]
    fn a_valid_state_normalises_and_diffs_to_nothing_against_itself() {
        let (norm, _) = validate_state(&state(), &[1]).unwrap();
        assert_eq!(norm.fib[0].mac, "02:00:00:00:00:0a", "MACs in canonical form");
        assert!(diff(&norm, &norm).is_empty());
        let (again, _) = validate_state(&norm, &[1]).unwrap();
        assert_eq!(again, norm, "validation is idempotent");
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let mut s = state();
        s.ports[0].vni = Some(200);
        assert!(validate_state(&s, &[1]).unwrap_err().starts_with("ports (vm1): vni: network 200 does not exist"));
        let mut s = state();
        s.networks[0].vni = 0;
        assert!(validate_state(&s, &[1]).unwrap_err().starts_with("networks (vni 0): vni: 0 is out of range"));
        let mut s = state();
        s.fib[0].mac = "nope".into();
        assert!(validate_state(&s, &[1]).unwrap_err().starts_with("fib (100 nope): mac:"));
        let mut s = state();
        s.ports.push(PortSpec { name: "vm2".into(), ..s.ports[0].clone() });
        assert!(validate_state(&s, &[1]).unwrap_err().contains("device \"net_null0\" is already used by port \"vm1\""));
        let mut s = state();
        s.xconnects.push(crate::state::Xconnect { a: "vm1".into(), b: "ghost".into() });
        assert!(validate_state(&s, &[1]).unwrap_err().contains("no port named \"ghost\""));
        let mut s = state();
        s.format = 9;
        assert!(validate_state(&s, &[1]).unwrap_err().starts_with("format:"));
    }

    #[test]
    fn diff_lists_additions_removals_and_changes() {
        let (a, _) = validate_state(&state(), &[1]).unwrap();
        let mut b = a.clone();
        b.ports[0].vni = None;
        b.ports[0].role = None;
        b.fib.clear();
        b.networks.push(NetworkSpec {
            vni: 7,
            name: Some("x".into()),
            max_macs: None,
            aging: None,
            flood_vteps: vec![],
            gateway: vec![],
            snat: false,
        });
        let d = diff(&a, &b);
        assert!(d.contains(&"~ port vm1: net_null0 role vm vni 100 -> net_null0".to_string()), "{d:?}");
        assert!(d.contains(&"- fib 100 02:00:00:00:00:0a".to_string()), "{d:?}");
        assert!(d.iter().any(|l| l.starts_with("+ network 7")), "{d:?}");
        assert!(!needs_new_device(&a.ports[0], &b.ports[0]), "a role change keeps the device");
    }
}
