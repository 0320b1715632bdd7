//! The API socket: permissions, many clients at once, and acknowledged changes that
//! survive `kill -9` at any moment.
use std::{
    collections::BTreeSet,
    os::unix::{fs::MetadataExt, net::UnixStream},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use vswitch_tests::*;

#[test]
fn the_socket_is_root_only_unless_a_group_is_given() {
    let d = Daemon::start();
    let m = std::fs::metadata(&d.socket).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid()), (0o600, 0));
    drop(d);
    // Debian's "daemon" group is gid 1.
    let d = Daemon::start_with(DaemonOpts {
        extra_args: vec!["--socket-group".into(), "daemon".into()],
        ..Default::default()
    });
    let m = std::fs::metadata(&d.socket).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid(), m.gid()), (0o660, 0, 1));
}

#[test]
fn many_clients_at_once_all_get_answers() {
    let daemon = Daemon::start();
    let d = &daemon;
    d.ok(&["port", "add", "gen", "net_null0"]);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // A writer changing networks while 16 readers ask questions.
        let writer = s.spawn(|| {
            let mut c = d.connect();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let vni = 1000 + n % 50;
                let r = c.call(serde_json::json!({"cmd": "network_add", "vni": vni})).unwrap();
                assert_eq!(r["ok"], true, "{r}");
                let r = c.call(serde_json::json!({"cmd": "network_del", "vni": vni})).unwrap();
                assert_eq!(r["ok"], true, "{r}");
                n += 1;
            }
            n
        });
        // A client that opens a connection and never says anything.
        let _silent = UnixStream::connect(&d.socket).unwrap();
        let readers: Vec<_> = (0..16)
            .map(|i| {
                s.spawn(move || {
                    let mut c = d.connect();
                    for _ in 0..50 {
                        let cmd = ["show", "stats", "port_list", "network_list", "cores"][i % 5];
                        let r = c.call(serde_json::json!({"cmd": cmd})).expect("an answer");
                        assert_eq!(r["ok"], true, "{cmd}: {r}");
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
    });
}

/// A tiny deterministic generator, so a failing run can be replayed from its seed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_change() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = Lcg(seed);
    let mut d = Daemon::start();
    // The model: networks the switch acknowledged.
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    for round in 0..6 {
        let kill_after = Duration::from_millis(20 + rng.next(300));
        let started = Instant::now();
        let mut c = d.connect();
        let mut killed = false;
        // The request the daemon died on: it may or may not have been written.
        let in_flight: Option<(bool, u64)> = loop {
            if !killed && started.elapsed() >= kill_after {
                d.kill9();
                killed = true;
            }
            // Add a new VNI, or delete one we have.
            let del = !acked.is_empty() && rng.next(3) == 0;
            let vni = if del {
                *acked.iter().nth(rng.next(acked.len() as u64) as usize).unwrap()
            } else {
                1 + rng.next(100_000)
            };
            if !del && acked.contains(&vni) {
                continue;
            }
            let req = if del {
                serde_json::json!({"cmd": "network_del", "vni": vni})
            } else {
                serde_json::json!({"cmd": "network_add", "vni": vni})
            };
            match c.call(req) {
                Some(r) if r["ok"] == true => {
                    if del {
                        acked.remove(&vni);
                    } else {
                        acked.insert(vni);
                    }
                }
                Some(r) => panic!("seed {seed}: refused {r}"),
                None => break Some((del, vni)), // the daemon is gone
            }
        };
        d.start_again();
        let now: BTreeSet<u64> =
            d.json(&["network", "list"]).as_array().unwrap().iter().map(|n| n["vni"].as_u64().unwrap()).collect();
        // Exactly the acknowledged changes; the one in flight at the kill may or may not
        // have been written, but nothing else.
        assert!(
            now == acked || now == with_in_flight(&acked, in_flight),
            "seed {seed}, round {round}: state {now:?}, acknowledged {acked:?}, in flight {in_flight:?}"
        );
        acked = now;
    }
    assert!(!acked.is_empty(), "seed {seed}: the test made changes");
}

/// Who changed what: every request that may change something is logged once, with
/// the answer it got, the uid and pid the kernel gives for the client's end of the
/// socket (SO_PEERCRED) and the program's name; reads are not. With `--log-format
/// json` each line is one JSON object a log shipper can take apart.
#[test]
fn changes_are_logged_once_with_the_clients_credentials_and_the_outcome() {
    let d =
        Daemon::start_with(DaemonOpts { extra_args: vec!["--log-format".into(), "json".into()], ..Default::default() });
    d.ok(&["network", "add", "5"]);
    d.err(&["port", "del", "nosuch"]);
    d.ok(&["conntrack", "flush"]);
    d.ok(&["network", "list"]);
    d.ok(&["port", "list"]);
    let log = d.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect();
    let audit: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["target"] == "audit").map(|l| &l["fields"]).collect();
    let cmds: Vec<&str> = audit.iter().map(|a| a["cmd"].as_str().unwrap()).collect();
    assert_eq!(cmds, ["network_add", "port_del", "conntrack_flush"], "{log}");
    for a in &audit {
        assert_eq!((&a["uid"], &a["user"], &a["comm"]), (&0.into(), &"root".into(), &"vswitchctl".into()), "{a}");
        assert!(a["pid"].as_i64().unwrap() > 1, "{a}");
    }
    assert_eq!((&audit[0]["result"], &audit[0]["changes"]), (&"ok".into(), &"put networks [5]".into()));
    assert_eq!(audit[1]["result"], "refused");
    assert!(audit[1]["error"].as_str().unwrap().contains("nosuch"), "{}", audit[1]);
    assert_eq!(audit[2]["result"], "ok");
}

/// Clients that connect and never speak, stop mid-line, nest JSON past any sense or
/// upload long requests all at once stall only themselves; past 4,096 connections a
/// client is told why it is closed, and the daemon never falls over.
#[test]
fn abusive_clients_stall_only_themselves() {
    use std::io::{BufRead, BufReader, Write};
    let d = Daemon::start();
    let line_of = |s: &mut UnixStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut l = String::new();
        BufReader::new(s).read_line(&mut l).unwrap_or(0);
        l
    };
    // Idle clients and ones stopped half-way through a line.
    let mut held: Vec<UnixStream> = (0..1000).map(|_| UnixStream::connect(&d.socket).unwrap()).collect();
    for _ in 0..50 {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(br#"{"version":1,"request":{"cmd":"netw"#).unwrap();
        held.push(s);
    }
    assert!(d.ok(&["show"]).contains("vswitchd"), "answered beside 1,050 stalled clients");
    // JSON nested 100,000 deep: refused by name, the connection still usable.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    let mut deep = "[".repeat(100_000);
    deep.push('\n');
    s.write_all(deep.as_bytes()).unwrap();
    assert!(line_of(&mut s).contains("not valid JSON"), "deep nesting is an error, not a crash");
    // Long requests in parts from five clients at once, 280 MB in all: past the 256 MiB
    // vswitchd holds at once, the client that crosses it is told and closed.
    let part = serde_json::json!({"version": 1, "part": "x".repeat(1_000_000), "last": false}).to_string() + "\n";
    let refused: usize = std::thread::scope(|sc| {
        let workers: Vec<_> = (0..5)
            .map(|_| {
                sc.spawn(|| {
                    let mut s = UnixStream::connect(&d.socket).unwrap();
                    for _ in 0..56 {
                        if s.write_all(part.as_bytes()).is_err() {
                            break;
                        }
                    }
                    s.set_nonblocking(true).unwrap();
                    std::thread::sleep(Duration::from_millis(500));
                    let mut l = String::new();
                    let _ = BufReader::new(&mut s).read_line(&mut l);
                    usize::from(l.contains("long requests"))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert!(refused >= 1, "a client past the bulk budget was refused");
    // Once they are gone the budget is back: a request in parts goes through.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    let req = serde_json::json!({"version": 1, "request": {"cmd": "show"}}).to_string();
    let (a, b) = req.split_at(10);
    for (p, last) in [(a, false), (b, true)] {
        let l = serde_json::json!({"version": 1, "part": p, "last": last}).to_string() + "\n";
        s.write_all(l.as_bytes()).unwrap();
    }
    assert!(line_of(&mut s).contains("\"ok\":true"), "a request in parts after the flood");
    // Past 4,096 connections a client gets one line saying why, then EOF.
    held.extend((0..3100).map(|_| UnixStream::connect(&d.socket).unwrap()));
    let mut over = UnixStream::connect(&d.socket).unwrap();
    assert!(line_of(&mut over).contains("API clients connected"), "the client past the limit is told");
    drop(held);
    assert!(
        wait_until(Duration::from_secs(10), || d.ctl(&["show"]).status.success()),
        "answered again once the crowd left"
    );
    assert!(d.log_text().lines().all(|l| !l.contains("panicked")), "no task panicked");
}
