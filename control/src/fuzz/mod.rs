//! The bodies of the control plane's fuzz targets (`fuzz/fuzz_targets/`), here so that
//! `cargo test` replays their corpora and every crash a fuzzer found
//! (`control/tests/fuzz_corpus.rs`). Each takes any bytes and must not panic; what
//! round-trips must come back the same.
use crate::{
    acl::{cli::parse_rules, compile_rule},
    apply::{cli::parse_state, validate_state},
    ports::{api::PortRole, PortRef},
    server,
    state::DesiredState,
    store::{
        change::Image,
        journal::{self, Base},
    },
};
use pipelines::wire::Mac;

pub(crate) mod requests;
pub use requests::requests;

/// The API's request decoder; a request it accepts encodes and decodes to itself.
pub fn api_request(data: &[u8]) {
    let Ok(req) = server::parse(data) else { return };
    let line =
        serde_json::to_vec(&crate::api::Envelope { version: crate::api::PROTOCOL_VERSION, request: req.clone() })
            .expect("an accepted request encodes");
    assert_eq!(server::parse(&line).expect("and decodes again"), req);
}

/// The journal reader: a header, records, their replay. With the first byte's bit 0
/// set, a valid header goes in front; with bit 1, every record's checksums are made
/// right; so the fuzzer spends its time on what records say rather than on checksums.
pub fn journal(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else { return };
    let mut bytes = if ctl & 1 != 0 { journal::header(Base::of(b"")) } else { Vec::new() };
    bytes.extend_from_slice(rest);
    if ctl & 2 != 0 {
        let mut at = journal::HEADER_LEN;
        while bytes.len() >= at + journal::RECORD_HEADER_LEN {
            let declared = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
            let len = declared.min(bytes.len() - at - journal::RECORD_HEADER_LEN);
            let payload = at + journal::RECORD_HEADER_LEN;
            let crc = crc32fast::hash(&bytes[payload..payload + len]);
            bytes[at..at + 4].copy_from_slice(journal::RECORD_MAGIC);
            bytes[at + 4..at + 8].copy_from_slice(&(len as u32).to_le_bytes());
            bytes[at + 8..at + 12].copy_from_slice(&crc.to_le_bytes());
            let head = crc32fast::hash(&bytes[at..at + 12]);
            bytes[at + 12..at + 16].copy_from_slice(&head.to_le_bytes());
            at = payload + len;
        }
    }
    if journal::read_header(&bytes).is_err() {
        return;
    }
    let Ok(scan) = journal::scan(&bytes) else { return };
    assert!(scan.good_len as usize + scan.torn as usize == bytes.len());
    let mut image = Image::from_value(serde_json::to_value(DesiredState::new()).expect("the empty state encodes"))
        .expect("the empty state is an image");
    for r in scan.records {
        for c in r.changes {
            if image.apply(c).is_err() {
                return;
            }
        }
    }
    // What replay gives is a state, or an error: never a panic.
    let _ = serde_json::from_value::<DesiredState>(image.to_value());
}

/// A desired-state file (`apply -f`, the snapshot): read, validated, and once valid,
/// valid again as it was normalised, to the same thing.
pub fn state_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(state) = parse_state(text, "input") else { return };
    let Ok((norm, _)) = validate_state(&state, &[1, 2]) else { return };
    let (again, _) = validate_state(&norm, &[1, 2]).expect("a normalised state is valid");
    assert_eq!(again, norm, "normalising is idempotent");
}

/// An `acl load` file: read, and each rule checked as the daemon checks it.
pub fn rule_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(rules) = parse_rules(text, "input") else { return };
    let ports = [PortRef {
        name: "vm1".into(),
        id: Some(0),
        role: Some(PortRole::Vm),
        vni: Some(100),
        mtu: 1500,
        mac: Mac::default(),
        rx_cores: 1,
    }];
    for (_, spec) in rules {
        let _ = compile_rule(&spec, &ports, &|vni| vni == 100);
    }
}

/// The CNI plugin's reading of an ADD: CNI_ARGS (the first line) and the network
/// configuration (the rest), checked as the plugin checks them. What it accepts goes
/// to vswitchd as a request that the daemon decodes to the same thing. No IPAM plugin
/// runs (CNI_PATH is empty) and nothing is sent.
pub fn cni_add(data: &[u8]) {
    use crate::{
        api::{Envelope, Request, PROTOCOL_VERSION},
        cni::{
            api::CniRequest,
            plugin::{attach_request, conf_of, identity},
        },
    };
    let (args, conf) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let inv = add_invocation(args);
    let _ = identity(&inv);
    let Ok(netconf) = conf_of(conf) else { return };
    let Ok(req) = attach_request(&inv, &netconf, conf) else { return };
    let request = Request::Cni(CniRequest::CniAdd(req));
    let line = serde_json::to_vec(&Envelope { version: PROTOCOL_VERSION, request: request.clone() })
        .expect("an ADD the plugin builds encodes");
    assert_eq!(server::parse(&line).expect("and the daemon reads it"), request);
}

/// An ADD as a runtime invokes the plugin, with these CNI_ARGS and no CNI_PATH.
fn add_invocation(args: &[u8]) -> crate::cni::plugin::Invocation {
    crate::cni::plugin::Invocation {
        command: "ADD".into(),
        container: "c0ffee".into(),
        netns: "/var/run/netns/fuzz".into(),
        ifname: "eth0".into(),
        args: String::from_utf8_lossy(args).into_owned(),
        path: String::new(),
    }
}

/// The cluster's view of the store under any sequence of puts and deletes of any keys
/// and values (a newer writer, damage, a hostile store). A line is one event: its first
/// byte's bit 0 clear for a put, set for a delete, then `KEY VALUE` under the prefix.
/// Nothing panics; after each event, the changes the switch is told take each network
/// from what it had to exactly what the view derives, and no MAC is put behind this
/// node's own VTEP; the shared entries that decode encode to entries that decode to the
/// same.
pub fn cluster_store(data: &[u8]) {
    use crate::cluster::{
        api::SharedState,
        keys::Keys,
        view::{diff, Derived, Op, Touched, View},
    };
    use std::collections::BTreeMap;
    const VNIS: [u32; 2] = [100, 200];
    let keys = Keys::new("/vs");
    let mut view = View::new("n1");
    for vni in VNIS {
        view.endpoints.insert(vni, BTreeMap::new());
    }
    let mut had: BTreeMap<u32, Derived> = BTreeMap::new();
    for (rev, line) in data.split(|&b| b == b'\n').enumerate() {
        let Some((&op, rest)) = line.split_first() else { continue };
        let text = String::from_utf8_lossy(rest);
        let (key, value) = text.split_once(' ').unwrap_or((&text, ""));
        let put = (op & 1 == 0).then_some(value.as_bytes());
        view.apply(&keys, &format!("/vs/{key}"), put, rev as i64 + 1, &mut Touched::default());
        for vni in VNIS {
            let now = view.derive(vni);
            let old = had.entry(vni).or_default();
            let mut ops = Vec::new();
            diff(vni, old, &now, &mut ops);
            for op in ops {
                match op {
                    Op::Mac { mac, vtep: Some(v), .. } => {
                        old.macs.insert(mac, v);
                    }
                    Op::Mac { mac, vtep: None, .. } => {
                        old.macs.remove(&mac);
                    }
                    Op::Ip { ip, at: Some(at), .. } => {
                        old.ips.insert(ip, at);
                    }
                    Op::Ip { ip, at: None, .. } => {
                        old.ips.remove(&ip);
                    }
                    Op::Flood { vteps, .. } => old.flood = vteps,
                    other => panic!("a network's changes are MACs, addresses and flood lists, not {other:?}"),
                }
            }
            assert_eq!(*old, now, "network {vni}: the changes take the switch to what the view derives");
            if let Some(own) = view.nodes.get("n1") {
                assert!(now.macs.values().all(|v| *v != own.rec.vtep), "a MAC behind this node's own VTEP");
            }
        }
    }
    let entries = view.shared.iter().map(|(k, v)| (k.clone(), v.rec.clone())).collect();
    let (state, _) = SharedState::from_entries(&entries);
    if let Ok(again) = state.entries() {
        let (decoded, bad) = SharedState::from_entries(&again);
        assert!(bad.is_empty(), "entries we encode decode: {bad:?}");
        assert_eq!(decoded.entries().ok(), Some(again), "and encode to the same entries");
    }
}

/// `vswitchctl trace` on a frame of the input arriving at a VM port or the uplink,
/// against tables from the input (security groups, connection tracking on some ports,
/// maybe a service): it must not panic, and what it says happens is what the pipeline
/// does to the same frame on its own (the port it leaves by and its bytes, the flood,
/// or the drop reason). A trace finds sessions but makes none; a single frame's fate
/// does not hang on the session it would make.
pub fn trace(data: &[u8]) {
    use dataplane::snapshot::{Role, Snapshot};
    use pipelines::{fuzz as packets, Action};
    let mut input = packets::Input(data);
    let t = packets::stateful_tables(&mut input);
    let ctl = input.u8();
    let from = packets::source(ctl);
    let frame = packets::arriving(&t, from, ctl & 4 != 0, input.0.len(), input.0);
    let mut snap = Snapshot::empty(1);
    for (p, vni) in packets::VM_PORTS {
        snap.ports[p as usize].role = Role::Vm { vni };
        snap.ports[p as usize].active = true;
    }
    snap.ports[packets::UPLINK as usize].role = Role::Uplink;
    snap.ports[packets::UPLINK as usize].active = true;
    snap.l2 = std::sync::Arc::new(t);
    let port = from.map_or(packets::UPLINK, |(p, _)| p);
    let view = crate::trace::trace(&snap, "in", port, (&frame, None), &|p| format!("p{p}"), &|_| None);
    let (m, out) = &packets::run_batch(&snap.l2, from, std::slice::from_ref(&frame), &mut Default::default())[0];
    match m.action {
        Action::Tx(p) => {
            assert_eq!(view.action, format!("tx on port p{p}"), "{view:?}");
            assert_eq!(view.output.as_deref(), Some(crate::trace::to_hex(out).as_str()), "{view:?}");
        }
        Action::Flood { vni } => assert!(view.action.starts_with(&format!("flood in VNI {vni} ")), "{view:?}"),
        Action::Punt => assert!(view.action.starts_with("to the control plane"), "{view:?}"),
        Action::Drop(r) => assert_eq!(view.drop_reason.as_deref(), Some(r.name()), "{view:?}"),
        Action::Continue => panic!("the pipeline left the frame undecided: {view:?}"),
    }
}

#[cfg(test)]
mod tests {
    use crate::cni::plugin::{attach_request, conf_of};

    fn seed(target: &str, name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../fuzz/corpus/{target}/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// The seeds reach the properties: the plugin accepts the built-in IPAM seed (and
    /// refuses the delegated one only for want of its plugin), and the store seed makes a
    /// network with a remote MAC.
    #[test]
    fn the_seeds_reach_the_checks() {
        let data = seed("cni_add", "seed-full");
        let (args, conf) = data.split_at(data.iter().position(|&b| b == b'\n').unwrap());
        let inv = super::add_invocation(args);
        let conf = &conf[1..];
        let req = attach_request(&inv, &conf_of(conf).unwrap(), conf).unwrap();
        assert_eq!((req.vni, req.identity.as_str(), req.mac.as_deref()), (100, "web/a-0", Some("02:00:00:00:00:09")));

        let keys = crate::cluster::keys::Keys::new("/vs");
        let mut view = crate::cluster::view::View::new("n1");
        view.endpoints.insert(100, Default::default());
        let events = String::from_utf8(seed("cluster_store", "seed-events")).unwrap();
        let mut macs = 0;
        for (rev, line) in events.lines().enumerate() {
            let (key, value) = line[1..].split_once(' ').unwrap_or((&line[1..], ""));
            let put = line.starts_with('0').then_some(value.as_bytes());
            view.apply(&keys, &format!("/vs/{key}"), put, rev as i64 + 1, &mut Default::default());
            macs = macs.max(view.derive(100).macs.len());
        }
        assert_eq!(macs, 1, "n2's endpoint was derived; n3 claims our own VTEP and is not");
        assert_eq!(view.shared.len(), 2);
    }
}
