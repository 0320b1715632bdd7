//! Requests as clients send them, in any order and with any values, through every
//! feature that keeps state beside the ports. Structure-aware: each request is one of
//! the API's (a template per verb) with its fields redrawn by the input from values that
//! meet each other's entries, values at the edges of their ranges and malformed text,
//! or left out; it goes over the wire (JSON, `server::parse`) as a client's would.
//!
//! What must hold, after every request: nothing panics; a refused request changed
//! nothing; the journal records of an accepted one, replayed onto the state as it was,
//! give the state the features hold; the tables compile, and no FIB entry sends a
//! network's frames to a port outside it (the stages trust that). After the last: the
//! state the switch holds is one `apply` accepts as it is (`dump | apply` is a no-op).
use crate::{
    acl::Acl,
    api::{Envelope, Request, PROTOCOL_VERSION},
    apply::validate_state,
    conntrack::Conntrack,
    feature::{Handled, Tables},
    overlay::api::NetworkSpec,
    ports::{
        api::{PortRole, PortSpec},
        port_ref, PortRef,
    },
    server,
    state::DesiredState,
    store::change::Image,
    switch::features::{Features, Routed},
};
use dataplane::{snapshot::Snapshot, MAX_PORTS};
use pipelines::{
    fuzz::Input,
    tables::{FibTarget, L2Tables},
};
use serde_json::Value;

/// Requests one input may send.
const MAX_REQUESTS: usize = 48;
/// Sessions in the connection-tracking table (a switch's default is a million).
const SESSIONS: u32 = 64;

/// The ports the requests name: three VM ports in networks 100 and 300, the uplink, and
/// three ports with no role (cross-connects).
pub(crate) fn ports() -> Vec<PortRef> {
    vec![
        port_ref("vm1", 0, PortRole::Vm, Some(100)),
        port_ref("vm2", 1, PortRole::Vm, Some(100)),
        port_ref("vm3", 2, PortRole::Vm, Some(300)),
        port_ref("up0", 3, PortRole::Uplink, None),
        PortRef { role: None, vni: None, ..port_ref("x1", 4, PortRole::Vm, None) },
        PortRef { role: None, vni: None, ..port_ref("x2", 5, PortRole::Vm, None) },
        PortRef { role: None, vni: None, ..port_ref("x3", 6, PortRole::Vm, None) },
    ]
}

/// The same ports as a state file writes them.
fn port_specs(ports: &[PortRef]) -> Vec<PortSpec> {
    ports
        .iter()
        .map(|p| PortSpec {
            name: p.name.clone(),
            devargs: format!("net_null{}", p.id.unwrap_or(0)),
            queues: None,
            cores: None,
            mtu: None,
            role: p.role,
            vni: p.vni,
            admin: Default::default(),
        })
        .collect()
}

/// The switch's features (as it holds them), with networks 100 and 300, which the VM
/// ports need from the start.
pub(crate) fn features() -> Features {
    let mut f = Features::new(Acl::default(), Conntrack::detached(SESSIONS));
    let net = |vni| NetworkSpec { vni, ..Default::default() };
    f.overlay.restore(vec![net(100), net(300)], None, vec![], vec![]);
    f
}

pub(crate) fn desired(f: &Features) -> DesiredState {
    let mut out = DesiredState::new();
    for feature in f.all_ref() {
        feature.desired(&mut out);
    }
    out
}

/// As the switch hands a request to its feature; None for requests of the ports, the
/// cores or the outside (CNI, cluster, captures).
pub(crate) fn handle(f: &mut Features, req: Request, ports: &[PortRef]) -> Option<Result<Handled, String>> {
    match f.handle(req, ports, None, &mut []) {
        Routed::Handled(h) => Some(h),
        Routed::Elsewhere(_) => None,
    }
}

/// The tables the cores would get, as `Switch::compile` builds them.
fn compile(f: &mut Features, ports: &[PortRef]) -> L2Tables {
    let mut t =
        Tables { snap: Snapshot::empty(1), l2: L2Tables { port_mtu: vec![1500; MAX_PORTS], ..Default::default() } };
    f.wire();
    for feature in f.all() {
        feature.compile(ports, 1, &mut t);
    }
    t.l2
}

/// The desired state with its sections in key order (replay leaves unordered sections
/// in whatever order; the features order them themselves).
pub(crate) fn canonical(mut s: DesiredState) -> DesiredState {
    s.networks.sort_by_key(|n| n.vni);
    s.fib.sort_by(|a, b| (a.vni, &a.mac).cmp(&(b.vni, &b.mac)));
    s.neighbours.sort_by_key(|n| n.ip);
    s.acl.sort_by_key(|r| r.id);
    s.qos.sort_by(|a, b| a.port.cmp(&b.port));
    s.endpoints.sort_by_key(|e| (e.vni, e.ip));
    s.services.sort_by(|a, b| a.name.cmp(&b.name));
    s.stateful.sort_by(|a, b| a.port.cmp(&b.port));
    s
}

/// One request per verb, every field given: the shapes the input fills in.
const TEMPLATES: &[&str] = &[
    r#"{"cmd":"network_add","vni":200,"name":"blue","max_macs":64,"aging":300,"flood_vteps":["192.168.50.2"],"gateway":["10.0.0.254/24"],"snat":true}"#,
    r#"{"cmd":"network_del","vni":200}"#,
    r#"{"cmd":"network_add_vtep","vni":100,"ip":"192.168.50.3"}"#,
    r#"{"cmd":"network_del_vtep","vni":100,"ip":"192.168.50.3"}"#,
    r#"{"cmd":"network_list"}"#,
    r#"{"cmd":"vtep_set","ip":"192.168.50.1/24","uplink":"up0","mac":"02:00:00:00:00:fe","gateway":"192.168.50.254","udp_port":4789,"ttl":64}"#,
    r#"{"cmd":"vtep_show"}"#,
    r#"{"cmd":"neigh_add","ip":"192.168.50.2","mac":"02:00:00:00:01:02"}"#,
    r#"{"cmd":"neigh_del","ip":"192.168.50.2"}"#,
    r#"{"cmd":"fib_add","vni":100,"mac":"02:00:00:00:00:01","port":"vm1"}"#,
    r#"{"cmd":"fib_add","vni":100,"mac":"02:00:00:00:00:02","vtep":"192.168.50.2"}"#,
    r#"{"cmd":"fib_del","vni":100,"mac":"02:00:00:00:00:01"}"#,
    r#"{"cmd":"fib_list","vni":100}"#,
    r#"{"cmd":"acl_add","id":3,"priority":10,"vni":100,"dir":"out","src":"10.0.0.0/8","dst":"10.0.0.1","proto":"icmp","icmp_type":8,"action":"allow"}"#,
    r#"{"cmd":"acl_add","id":1,"priority":10,"port":"vm1","dir":"in","src":"10.0.0.0/8","dst":"10.0.0.1","proto":"tcp","sport":"1000-2000","dport":"80","action":"deny"}"#,
    r#"{"cmd":"acl_del","id":1}"#,
    r#"{"cmd":"acl_list","port":"vm1","vni":100}"#,
    r#"{"cmd":"acl_load","rules":[{"id":2,"priority":5,"port":"vm2","dir":"out","src":"10.0.0.2","dst":"0.0.0.0/0","proto":"udp","sport":"53","dport":"1-65535","action":"allow"}]}"#,
    r#"{"cmd":"acl_default","port":"vm1","action":"deny"}"#,
    r#"{"cmd":"qos_set","port":"vm1","mode":"srtcm","ingress":{"rate":"10mbit","burst":"32kb","excess_burst":"64kb"},"egress":{"rate":"1kpps","burst":"32pkt","excess_burst":"8pkt"},"yellow":"dscp=10","red":"drop","dscp":46}"#,
    r#"{"cmd":"qos_set","port":"vm2","mode":"trtcm","ingress":{"rate":"10mbit","burst":"32kb","peak_rate":"20mbit","peak_burst":"64kb"},"egress":{"rate":"1kpps","burst":"32pkt","peak_rate":"2kpps","peak_burst":"64pkt"},"yellow":"pass","red":"dscp=8"}"#,
    r#"{"cmd":"qos_clear","port":"vm1"}"#,
    r#"{"cmd":"qos_show","port":"vm1"}"#,
    r#"{"cmd":"sflow_set","collectors":["127.0.0.1:6343"],"sampling":1000,"polling":20,"agent":"192.168.50.1","header_bytes":128}"#,
    r#"{"cmd":"sflow_off"}"#,
    r#"{"cmd":"sflow_show"}"#,
    r#"{"cmd":"xconnect_add","a":"x1","b":"x2"}"#,
    r#"{"cmd":"xconnect_del","a":"x1"}"#,
    r#"{"cmd":"endpoint_add","vni":100,"ip":"10.0.0.5","mac":"02:00:00:00:00:05","port":"vm1"}"#,
    r#"{"cmd":"endpoint_add","vni":100,"ip":"fd00::6","mac":"02:00:00:00:00:06","vtep":"192.168.50.2"}"#,
    r#"{"cmd":"endpoint_del","vni":100,"ip":"10.0.0.5"}"#,
    r#"{"cmd":"endpoint_list","vni":100}"#,
    r#"{"cmd":"endpoint_add","vni":100,"ip":"10.0.0.7","mac":"02:00:00:00:00:07","port":"vm2","container":"c1","netns":"/var/run/netns/c1"}"#,
    r#"{"cmd":"acl_stateful","port":"vm1","on":true,"liberal":true,"sticky":true,"pickup":true,"max_sessions":10}"#,
    r#"{"cmd":"conntrack_list","port":"vm1","vni":100,"limit":10}"#,
    r#"{"cmd":"conntrack_flush","port":"vm1","vni":100}"#,
    r#"{"cmd":"conntrack_stats"}"#,
    r#"{"cmd":"conntrack_events","since":0,"port":"vm1"}"#,
    r#"{"cmd":"conntrack_timeouts","set":{"tcp_established":3600,"udp":10}}"#,
    r#"{"cmd":"service_add","name":"web","vni":100,"vip":"10.0.0.100:80","proto":"tcp","backends":["10.0.0.1:8080@2"],"algorithm":"maglev","affinity":60,"table_size":251,"node_port":30080}"#,
    r#"{"cmd":"service_set_backends","name":"web","backends":["10.0.0.2:8080"]}"#,
    r#"{"cmd":"service_del","name":"web"}"#,
    r#"{"cmd":"service_list"}"#,
];

/// Text a field may get instead of its template's: names and addresses that meet each
/// other's entries, their IPv6 and edge forms, and text no field takes.
const STRINGS: &[&str] = &[
    "vm1",
    "vm2",
    "vm3",
    "up0",
    "x1",
    "x2",
    "x3",
    "",
    "nosuch",
    "web",
    "db",
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.100",
    "192.168.50.2",
    "192.168.50.1/24",
    "10.0.0.254/24",
    "10.0.0.1/8",
    "10.1.0.254/16",
    "fd00::fe/64",
    "fd00::1",
    "0.0.0.0/0",
    "::/0",
    "255.255.255.255/32",
    "10.0.0.0/33",
    "224.0.0.1",
    "10.0.0.100:80",
    "[fd00::64]:80",
    "10.0.0.1:8080",
    "10.0.0.2:8080@3",
    "10.0.0.3:8080@0",
    "10.0.0.1:0",
    "10.0.0.1:65535@4294967295",
    "[fd00::1]:8080@2",
    "10.0.0.1:8080@x",
    "10.0.0.100:80:80",
    "02:00:00:00:00:01",
    "02:00:00:00:00:02",
    "02:00:00:00:01:02",
    "ff:ff:ff:ff:ff:ff",
    "01:00:5e:00:00:01",
    "00:00:00:00:00:00",
    "2:0:0:0:0:1",
    "02:00:00:00:00",
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "any",
    "17",
    "255",
    "80",
    "1000-2000",
    "2000-1000",
    "0-65535",
    "65536",
    "-1",
    "1mbit",
    "10gbit",
    "0bit",
    "100pps",
    "1.5mbit",
    "18446744073709551615bit",
    "99999999999999gbit",
    "32kb",
    "0b",
    "1500b",
    "64kb",
    "1pkt",
    "4294967296pkt",
    "dscp=46",
    "dscp=64",
    "pass",
    "drop",
    "maglev",
    "random",
    "allow",
    "deny",
    "in",
    "out",
    "srtcm",
    "trtcm",
    "127.0.0.1:6343",
    "[::1]:6343",
    "127.0.0.1:0",
    "\u{0}",
    "é\u{301}",
    "a/b/../../c",
    "vm1 ",
];

/// Numbers a field may get: the networks and ids in use, and the edges of u8, u16, u32
/// and the 24-bit VNI.
const NUMBERS: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    46,
    63,
    64,
    100,
    200,
    300,
    255,
    256,
    251,
    1499,
    16381,
    16383,
    65535,
    65536,
    (1 << 24) - 1,
    1 << 24,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    u64::MAX,
];

/// `template` with its fields redrawn by `input`: a byte per field picks the
/// template's value (0), one of the dictionary's, a number from the next four bytes
/// (255), or no field at all (254); a list's byte keeps its length (0) or gives one.
fn shape(template: &Value, input: &mut Input) -> Value {
    match template {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter_map(|(k, v)| {
                    if k == "cmd" {
                        return Some((k.clone(), v.clone()));
                    }
                    let pick = input.u8();
                    (pick != 254).then(|| (k.clone(), redraw(v, pick, input)))
                })
                .collect(),
        ),
        other => {
            let pick = input.u8();
            redraw(other, pick, input)
        }
    }
}

fn redraw(template: &Value, pick: u8, input: &mut Input) -> Value {
    let i = pick as usize;
    match template {
        Value::Object(_) => shape(template, input),
        Value::Array(items) if pick == 0 => Value::Array(items.iter().map(|item| shape(item, input)).collect()),
        Value::Array(items) => match items.first() {
            Some(item) => Value::Array((0..pick % 4).map(|_| shape(item, input)).collect()),
            None => Value::Array(Vec::new()),
        },
        Value::String(_) if (1..=STRINGS.len()).contains(&i) => Value::String(STRINGS[i - 1].into()),
        Value::Number(_) if pick == 255 => Value::from(input.u32()),
        Value::Number(_) if (1..=NUMBERS.len()).contains(&i) => Value::from(NUMBERS[i - 1]),
        Value::Bool(_) if pick != 0 => Value::Bool(pick & 1 != 0),
        other => other.clone(),
    }
}

/// The request a client sends from the next bytes: its verb, then its fields. None if
/// the daemon would refuse to read it (a field of the wrong type or range).
fn next_request(input: &mut Input) -> Option<Request> {
    let template: Value = serde_json::from_str(TEMPLATES[input.u8() as usize % TEMPLATES.len()]).ok()?;
    let request = shape(&template, input);
    let line = serde_json::to_vec(&serde_json::json!({ "version": PROTOCOL_VERSION, "request": request })).ok()?;
    let req = server::parse(&line).ok()?;
    // As the API target checks: what the daemon reads, a client can write.
    let again = serde_json::to_vec(&Envelope { version: PROTOCOL_VERSION, request: req.clone() })
        .expect("a request the daemon read encodes");
    assert_eq!(server::parse(&again).as_ref(), Ok(&req), "a request read back");
    Some(req)
}

/// No FIB entry of a network names a port outside it: the stages send such a
/// network's frames to the port without asking.
fn check_fib(t: &L2Tables, ports: &[PortRef]) {
    for (vni, shard) in &t.fib {
        for (mac, e) in shard.iter() {
            if let FibTarget::Port(id) = e.target {
                let p = ports.iter().find(|p| p.id == Some(id));
                assert!(
                    p.is_some_and(|p| p.role == Some(PortRole::Vm) && p.vni == Some(*vni)),
                    "network {vni}: MAC {mac:012x} is sent to port {id} ({p:?}), not one of the network's VM ports"
                );
            }
        }
    }
}

pub fn requests(data: &[u8]) {
    let mut input = Input(data);
    let ports = ports();
    let mut f = features();
    let mut image =
        Image::from_value(serde_json::to_value(desired(&f)).expect("a state encodes")).expect("a state is an image");
    let mut sent = Vec::new();
    while !input.is_empty() && sent.len() < MAX_REQUESTS {
        let Some(req) = next_request(&mut input) else { continue };
        sent.push(req.clone());
        let before = canonical(desired(&f));
        match handle(&mut f, req, &ports) {
            None => continue,
            Some(Ok(h)) => {
                for c in h.changes {
                    image.apply(c).expect("a record applies to the state it was made from");
                }
                if h.publish {
                    check_fib(&compile(&mut f, &ports), &ports);
                }
            }
            Some(Err(_)) => {
                assert!(canonical(desired(&f)) == before, "refused, and yet it changed the state: {sent:#?}")
            }
        }
        let replayed: DesiredState = serde_json::from_value(image.to_value()).expect("the image is a state");
        assert!(canonical(replayed) == canonical(desired(&f)), "the journal's replay differs: {sent:#?}");
    }
    let mut held = desired(&f);
    held.ports = port_specs(&ports);
    match validate_state(&held, &[1]) {
        Ok((norm, _)) => assert!(canonical(norm) == canonical(held), "apply would change the state held: {sent:#?}"),
        Err(e) => panic!("apply refuses the state the switch holds ({e}): {sent:#?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template is a request the daemon reads as written, and the handlers accept
    /// the ones that change something, in this order, from the start.
    #[test]
    fn the_templates_are_requests_the_features_take() {
        let ports = ports();
        let mut f = features();
        let mut refused = Vec::new();
        for t in TEMPLATES {
            let line = format!(r#"{{"version":{PROTOCOL_VERSION},"request":{t}}}"#);
            let req = server::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{t}: {e}"));
            if let Some(Err(e)) = handle(&mut f, req, &ports) {
                refused.push(format!("{t}: {e}"));
            }
        }
        assert!(refused.is_empty(), "{refused:#?}");
    }

    /// A network goes only once nothing names it: each feature with entries in it says
    /// so in turn, and the state held stays one `apply` takes.
    #[test]
    fn a_network_goes_only_once_nothing_is_in_it() {
        let ports = ports();
        let mut f = features();
        let mut send = |t: &str| {
            let line = format!(r#"{{"version":{PROTOCOL_VERSION},"request":{t}}}"#);
            let req = server::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{t}: {e}"));
            let reply = handle(&mut f, req, &ports).unwrap_or_else(|| panic!("{t}: not a feature's"));
            let mut held = desired(&f);
            held.ports = port_specs(&ports);
            validate_state(&held, &[1]).unwrap_or_else(|e| panic!("after {t}: {e}"));
            reply.map(|_| ()).map_err(|e| e.to_string())
        };
        for t in [
            r#"{"cmd":"network_add","vni":200,"gateway":["10.2.0.254/24"]}"#,
            r#"{"cmd":"acl_add","id":7,"priority":10,"vni":200,"dir":"out","action":"deny"}"#,
            r#"{"cmd":"service_add","name":"web","vni":200,"vip":"10.2.0.100:80","proto":"tcp","backends":["10.2.0.1:8080"]}"#,
            r#"{"cmd":"endpoint_add","vni":200,"ip":"10.2.0.5","mac":"02:00:00:00:00:05","vtep":"192.168.50.2"}"#,
        ] {
            send(t).unwrap_or_else(|e| panic!("{t}: {e}"));
        }
        let del = r#"{"cmd":"network_del","vni":200}"#;
        for (why, then) in [
            ("network 200 still has ACL rules (1, e.g. rule 7); delete them first", r#"{"cmd":"acl_del","id":7}"#),
            ("network 200 still has static endpoints (1)", r#"{"cmd":"endpoint_del","vni":200,"ip":"10.2.0.5"}"#),
            ("network 200 still has services (web); delete them first", r#"{"cmd":"service_del","name":"web"}"#),
        ] {
            let e = send(del).expect_err("refused while something is in it");
            assert!(e.contains(why), "{e}");
            send(then).unwrap_or_else(|e| panic!("{then}: {e}"));
        }
        send(del).expect("nothing left in it");
        assert!(send(del).unwrap_err().contains("no network 200"));
    }

    /// A zero byte keeps a template's value: a short input sends templates as written.
    #[test]
    fn zero_bytes_send_the_templates() {
        for (i, t) in TEMPLATES.iter().enumerate() {
            let template: Value = serde_json::from_str(t).unwrap();
            let mut zeros = [0u8; 64];
            zeros[0] = i as u8;
            let mut input = Input(&zeros);
            let req = next_request(&mut input).unwrap_or_else(|| panic!("{t}"));
            let want = server::parse(format!(r#"{{"version":{PROTOCOL_VERSION},"request":{template}}}"#).as_bytes());
            assert_eq!(Ok(req), want, "{t}");
        }
    }
}
