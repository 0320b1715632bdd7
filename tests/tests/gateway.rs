//! The anycast gateway and the endpoint table, with the kernels' own stacks as the
//! judges: two containers in one network but different subnets route through the
//! gateway (ping, its TTL, the kernel's neighbour table), and scapy reads the ARP and
//! neighbour-discovery answers the switch writes for known addresses.
use vswitch_tests::*;

const GATEWAY_MAC: &str = "02:76:73:67:77:01";

/// vm1 (10.71.1.1/24, fd00:71:1::1/64) and vm2 (10.71.2.2/24, fd00:71:2::2/64) in VNI
/// 100, each with its default route via the gateway and an endpoint entry.
fn two_subnets(d: &Daemon) -> (TapVm, TapVm) {
    let (a, b) = dual_stack(d, 71, ["10.71.1.1/24", "10.71.2.2/24"], ["fd00:71:1::1", "fd00:71:2::2"]);
    for vm in [&a, &b] {
        vm.sh(&["ip", "route", "add", "default", "via", "10.71.1.254", "dev", &vm.ifname, "onlink"]);
        vm.sh(&["ip", "-6", "route", "add", "default", "via", "fd00:71:1::fe", "dev", &vm.ifname, "onlink"]);
    }
    for (vm, port, ips) in [(&a, "vm1", ["10.71.1.1", "fd00:71:1::1"]), (&b, "vm2", ["10.71.2.2", "fd00:71:2::2"])] {
        for ip in ips {
            d.ok(&["endpoint", "add", "100", ip, &vm.mac(), "--port", port]);
        }
    }
    (a, b)
}

/// Network 100 with gateways 10.N.1.254/24 and fd00:N:1::fe/64, and VM ports vm1 and
/// vm2 with the addresses given (IPv4 with length; IPv6 without).
fn dual_stack(d: &Daemon, n: u8, v4: [&str; 2], v6: [&str; 2]) -> (TapVm, TapVm) {
    d.ok(&[
        "network",
        "add",
        "100",
        "--gateway",
        &format!("10.{n}.1.254/24"),
        "--gateway",
        &format!("fd00:{n}:1::fe/64"),
    ]);
    let a = TapVm::add_with(d, "vm1", v4[0], &["--role", "vm", "--vni", "100"]);
    let b = TapVm::add_with(d, "vm2", v4[1], &["--role", "vm", "--vni", "100"]);
    for (vm, ip) in [(&a, v6[0]), (&b, v6[1])] {
        vm.sh(&["sysctl", "-qw", &format!("net.ipv6.conf.{}.disable_ipv6=0", vm.ifname)]);
        vm.sh(&["ip", "-6", "addr", "add", &format!("{ip}/64"), "dev", &vm.ifname, "nodad"]);
    }
    (a, b)
}

fn ping(vm: &TapVm, to: &str) -> String {
    let out = vm.ns.exec(&["ping", "-c", "2", "-i", "0.2", "-W", "1", to]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ask(vm: &TapVm, src: &str, target: &str) -> String {
    vm.ns.exec_ok(&[PYTHON, &py_script("ask_neighbour.py"), &vm.ifname, src, target]).trim().to_owned()
}

#[test]
fn the_gateway_routes_between_subnets_of_a_network() {
    let d = Daemon::start();
    let (a, b) = two_subnets(&d);

    // Routed both ways: each kernel sends to the gateway's MAC and gets one hop spent.
    let out = ping(&a, "10.71.2.2");
    assert!(out.contains("2 received") && out.contains("ttl=63"), "{out}");
    let out = ping(&a, "fd00:71:2::2");
    assert!(out.contains("2 received") && out.contains("ttl=63"), "{out}");
    let neigh = a.sh(&["ip", "neigh", "show", "10.71.1.254"]);
    assert!(neigh.contains(GATEWAY_MAC), "the kernel resolved the gateway to its virtual MAC: {neigh}");
    let neigh = b.sh(&["ip", "-6", "neigh", "show", "fd00:71:1::fe"]);
    assert!(neigh.contains(GATEWAY_MAC) && neigh.contains("router"), "{neigh}");

    // The gateway answers pings to itself, unrouted.
    let out = ping(&b, "10.71.1.254");
    assert!(out.contains("2 received") && out.contains("ttl=64"), "{out}");
    let out = ping(&b, "fd00:71:1::fe");
    assert!(out.contains("2 received"), "{out}");

    // An address no endpoint holds is dropped and counted (not flooded to find it).
    assert!(ping(&a, "10.71.3.3").contains("0 received"));
    let drops = d.port_stats("vm1")["drops"]["no_endpoint"].as_u64().unwrap_or(0);
    assert!(drops >= 2, "{}", d.port_stats("vm1"));

    // Its endpoint gone, vm2 is unreachable through the gateway.
    d.ok(&["endpoint", "del", "100", "10.71.2.2"]);
    assert!(ping(&a, "10.71.2.2").contains("0 received"));
    let list = d.json(&["endpoint", "list", "100"]);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
}

/// Duplicate address detection, judged by the kernel: a VM that would take the
/// gateway's IPv6 address finds it taken; an address nobody holds it gets.
#[test]
fn a_vm_that_would_take_the_gateway_ipv6_address_finds_it_taken() {
    let d = Daemon::start();
    let (a, _b) = two_subnets(&d);
    assert!(a.ns.address_taken(&a.ifname, "fd00:71:1::fe/64"), "the gateway's address");
    assert!(!a.ns.address_taken(&a.ifname, "fd00:71:1::77/64"), "an address nobody holds");
}

#[test]
fn the_switch_answers_arp_and_nd_for_known_addresses_without_a_flood() {
    let d = Daemon::start();
    let (a, b) = two_subnets(&d);
    let vm2_mac = b.mac();

    // What reaches vm2 of the questions, as tshark there reads it.
    let seen = b.ns.spawn(&[
        "tshark",
        "-l",
        "-i",
        &b.ifname,
        "-a",
        "duration:8",
        "-f",
        "arp or icmp6",
        "-Y",
        "arp or icmpv6.type == 135",
        "-T",
        "fields",
        "-e",
        "arp.dst.proto_ipv4",
        "-e",
        "icmpv6.nd.ns.target_address",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(ask(&a, "10.71.1.1", "10.71.2.2"), format!("{vm2_mac} - {vm2_mac}"));
    assert_eq!(ask(&a, "10.71.1.1", "10.71.1.254"), format!("{GATEWAY_MAC} - {GATEWAY_MAC}"));
    assert_eq!(ask(&a, "fd00:71:1::1", "fd00:71:2::2"), format!("{vm2_mac} - {vm2_mac}"), "solicited, not a router");
    assert_eq!(ask(&a, "fd00:71:1::1", "fd00:71:1::fe"), format!("{GATEWAY_MAC} R {GATEWAY_MAC}"));
    // An unknown address is still asked of the network (and nobody answers here).
    assert_eq!(ask(&a, "10.71.1.1", "10.71.1.99"), "none");
    let out = seen.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    // (The kernels' own link-local chatter aside.)
    let asked: Vec<&str> =
        seen.lines().map(str::trim).filter(|l| l.starts_with("10.71.") || l.starts_with("fd00:71:")).collect();
    assert_eq!(asked, vec!["10.71.1.99"], "answered on vm1's switch, only the unknown address flooded to vm2");

    // Moved to another port: answered with the new MAC at once.
    d.ok(&["endpoint", "add", "100", "10.71.2.2", "02:00:00:00:71:22", "--vtep", "192.168.71.2"]);
    assert_eq!(ask(&a, "10.71.1.1", "10.71.2.2"), "02:00:00:00:71:22 - 02:00:00:00:71:22");
    let dump = d.ok(&["dump"]);
    assert!(dump.contains("\"endpoints\"") && dump.contains("192.168.71.2"), "{dump}");
    assert!(dump.contains("\"gateway\""), "{dump}");
}

#[test]
fn endpoints_are_learned_from_what_vms_say_in_arp_and_nd() {
    let d = Daemon::start();
    let (a, b) = dual_stack(&d, 72, ["10.72.1.1/24", "10.72.2.2/24"], ["fd00:72:1::1", "fd00:72:2::2"]);
    for vm in [&a, &b] {
        vm.sh(&["ip", "route", "add", "default", "via", "10.72.1.254", "dev", &vm.ifname, "onlink"]);
        vm.sh(&["ip", "-6", "route", "add", "default", "via", "fd00:72:1::fe", "dev", &vm.ifname, "onlink"]);
    }
    // Nobody is known yet: routed traffic to vm2 has nowhere to go.
    assert!(ping(&a, "10.72.2.2").contains("0 received"));
    // Each VM resolves the gateway (ARP, NS): that is enough for its switch to know it.
    for vm in [&a, &b] {
        assert!(ping(vm, "10.72.1.254").contains("2 received"));
        assert!(ping(vm, "fd00:72:1::fe").contains("2 received"));
    }
    let list = d.json(&["endpoint", "list", "100"]);
    let learned: Vec<(String, String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["source"], "learned", "{e}");
            (e["ip"].as_str().unwrap().into(), e["mac"].as_str().unwrap().into(), e["port"].as_str().unwrap().into())
        })
        .collect();
    let (ma, mb) = (a.mac(), b.mac());
    for want in [
        ("10.72.1.1", &ma, "vm1"),
        ("10.72.2.2", &mb, "vm2"),
        ("fd00:72:1::1", &ma, "vm1"),
        ("fd00:72:2::2", &mb, "vm2"),
    ] {
        assert!(learned.contains(&(want.0.into(), want.1.clone(), want.2.into())), "{want:?} in {learned:?}");
    }
    assert!(ping(&a, "10.72.2.2").contains("2 received"));
    assert!(ping(&a, "fd00:72:2::2").contains("2 received"));
    // What is learned is not configuration.
    assert!(!d.ok(&["dump"]).contains("\"endpoints\""));
}

#[test]
fn the_gateway_asks_who_holds_an_address_nobody_spoke_for() {
    let d = Daemon::start();
    let (a, _b) = dual_stack(&d, 75, ["10.75.1.1/24", "10.75.1.2/24"], ["fd00:75:1::1", "fd00:75:1::2"]);
    // vm1 reaches vm2 through the gateway (a route for part of the subnet, and a host
    // route for IPv6); vm2 has said nothing yet, so its only way to become known is to
    // answer the gateway's own question.
    a.sh(&["ip", "route", "add", "10.75.1.0/25", "via", "10.75.1.254", "dev", &a.ifname]);
    a.sh(&["ip", "-6", "route", "add", "fd00:75:1::2/128", "via", "fd00:75:1::fe", "dev", &a.ifname]);
    let list = d.json(&["endpoint", "list", "100"]);
    assert!(!list.to_string().contains("10.75.1.2\""), "{list}");
    for to in ["10.75.1.2", "fd00:75:1::2"] {
        let out = vm_ping(&a, to, 4);
        let got: u32 = out.split(" received").next().and_then(|s| s.rsplit(' ').next()?.parse().ok()).unwrap_or(0);
        // The first may be dropped (nothing waits for the answer); the rest pass.
        assert!(got >= 3, "{to}: {out}");
    }
    let list = d.json(&["endpoint", "list", "100"]).to_string();
    for ip in ["10.75.1.2", "fd00:75:1::2"] {
        assert!(list.contains(&format!("\"ip\":\"{ip}\"")), "{ip} learned from its answer: {list}");
    }
    // An address nobody holds: asked about, never answered, its packets dropped and
    // counted (none flooded).
    let drops = || d.port_stats("vm1")["drops"]["no_endpoint"].as_u64().unwrap_or(0);
    let before = drops();
    assert!(vm_ping(&a, "10.75.1.77", 2).contains(" 0 received"));
    assert!(drops() >= before + 2);
}

fn vm_ping(vm: &TapVm, to: &str, count: u32) -> String {
    let out = vm.ns.exec(&["ping", "-c", &count.to_string(), "-i", "0.5", "-W", "1", to]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
