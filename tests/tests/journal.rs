//! The durable state as a journal beside a snapshot: kill -9 while clients change it and
//! while it compacts, a record a crash cut short, a flipped bit in the middle, and bulk
//! requests too long for one line.
use serde_json::json;
use std::{
    collections::BTreeSet,
    io::Write,
    process::Command,
    time::{Duration, Instant},
};
use vswitch_tests::*;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// What a client was told, and the request it had in flight when vswitchd died
/// (whether it was a delete, and its VNI).
type Outcome = (BTreeSet<u64>, Option<(bool, u64)>);

fn networks(d: &Daemon) -> BTreeSet<u64> {
    d.json(&["network", "list"]).as_array().unwrap().iter().map(|n| n["vni"].as_u64().unwrap()).collect()
}

/// Four clients change networks of their own (so each keeps its own model) while the
/// journal is compacted every few changes; vswitchd is killed at a random moment. After
/// each restart every client's networks are exactly what it was told, give or take the
/// one request it had in flight.
#[test]
fn kill_9_during_changes_and_compaction_loses_nothing_acknowledged() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = Lcg(seed);
    let mut d = Daemon::start_with(DaemonOpts {
        extra_args: vec!["--journal-compact-min".into(), "1024".into()],
        ..Default::default()
    });
    const CLIENTS: u64 = 4;
    let mut acked: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); CLIENTS as usize];
    let mut compactions = 0;
    for round in 0..5 {
        let kill_after = Duration::from_millis(50 + rng.next(400));
        let before = std::fs::read(&d.db).unwrap_or_default();
        let results: Vec<Outcome> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let mut mine = acked[c as usize].clone();
                    let mut api = d.connect();
                    let mut rng = Lcg(seed ^ (round * 31 + c));
                    s.spawn(move || loop {
                        // VNIs 1 + c*1000 .. : this client's own.
                        let del = !mine.is_empty() && rng.next(3) == 0;
                        let vni = if del {
                            *mine.iter().nth(rng.next(mine.len() as u64) as usize).unwrap()
                        } else {
                            1 + c * 1000 + rng.next(1000)
                        };
                        if !del && mine.contains(&vni) {
                            continue;
                        }
                        let cmd = if del { "network_del" } else { "network_add" };
                        match api.call(json!({"cmd": cmd, "vni": vni})) {
                            Some(r) if r["ok"] == true => {
                                if del {
                                    mine.remove(&vni);
                                } else {
                                    mine.insert(vni);
                                }
                            }
                            Some(r) => panic!("seed {seed}: refused {r}"),
                            None => break (mine, Some((del, vni))),
                        }
                    })
                })
                .collect();
            let started = Instant::now();
            while started.elapsed() < kill_after {
                std::thread::sleep(Duration::from_millis(5));
            }
            d.kill9();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        d.start_again();
        if std::fs::read(&d.db).unwrap_or_default() != before {
            compactions += 1;
        }
        let now = networks(&d);
        for (c, (mine, in_flight)) in results.into_iter().enumerate() {
            let lo = 1 + c as u64 * 1000;
            let theirs: BTreeSet<u64> = now.iter().copied().filter(|v| (lo..lo + 1000).contains(v)).collect();
            assert!(
                theirs == mine || theirs == with_in_flight(&mine, in_flight),
                "seed {seed}, round {round}, client {c}: state {theirs:?}, acknowledged {mine:?}, in flight {in_flight:?}"
            );
            acked[c] = theirs;
        }
    }
    assert!(acked.iter().map(BTreeSet::len).sum::<usize>() > 0, "seed {seed}: the test made changes");
    assert!(compactions >= 3, "seed {seed}: the snapshot was rewritten in only {compactions} of 5 rounds");
}

/// The offset of the `n`-th record (from 0) of a journal file.
fn record_offset(bytes: &[u8], n: usize) -> usize {
    let mut at = 24;
    for _ in 0..n {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 16 + len;
    }
    at
}

#[test]
fn a_torn_tail_is_dropped_and_a_flipped_bit_is_refused_with_file_and_offset() {
    let mut d = Daemon::start();
    for vni in [10, 11, 12, 13] {
        d.ok(&["network", "add", &vni.to_string()]);
    }
    d.kill9();
    let journal = d.db.with_file_name("conf.json.journal");
    // Half a record, as a crash in the middle of a write leaves it.
    let bytes = std::fs::read(&journal).unwrap();
    let second = record_offset(&bytes, 1);
    let third = record_offset(&bytes, 2);
    let mut f = std::fs::OpenOptions::new().append(true).open(&journal).unwrap();
    f.write_all(&bytes[second..(second + third) / 2]).unwrap();
    drop(f);
    d.start_again();
    assert_eq!(networks(&d), BTreeSet::from([10, 11, 12, 13]));
    assert!(d.log_text().contains("dropped the last"), "{}", d.log_tail());
    assert_eq!(std::fs::read(&journal).unwrap(), bytes, "cut back to the last whole record");
    d.ok(&["network", "add", "14"]);
    d.kill9();

    // One bit of the second record's contents.
    let mut bytes = std::fs::read(&journal).unwrap();
    let second = record_offset(&bytes, 1);
    bytes[second + 16 + 5] ^= 0x20;
    std::fs::write(&journal, &bytes).unwrap();
    let o = Command::new(bin("vswitchd"))
        .args(["--socket", d.socket.to_str().unwrap(), "--db", d.db.to_str().unwrap(), "--"])
        .args(Daemon::eal_args(&unique("flip")))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains(journal.to_str().unwrap()) && e.contains(&format!("offset {second}")), "{e}");
    assert_eq!(std::fs::read(&journal).unwrap(), bytes, "left as it was");
}

/// 10,000 rules as tenants write them: a source prefix, a protocol, a port range and a
/// direction on each.
fn rules(n: usize, bad_line: Option<usize>) -> String {
    let mut rng = Lcg(9);
    (0..n)
        .map(|i| {
            if Some(i) == bad_line {
                return "--priority 5 --port vm1 --src 10.0.0.0/33 --action deny\n".to_string();
            }
            let lo = 1024 + rng.next(30_000);
            format!(
                "--priority {} --port vm{} --dir {} --src 10.{}.{}.0/24 --proto {} --dport {}-{} --action {}\n",
                1 + rng.next(1000),
                1 + i % 2,
                ["in", "out"][rng.next(2) as usize],
                rng.next(256),
                rng.next(256),
                ["tcp", "udp"][rng.next(2) as usize],
                lo,
                lo + rng.next(1000),
                ["allow", "deny"][rng.next(2) as usize],
            )
        })
        .collect()
}

#[test]
fn acl_load_of_10000_rules_goes_in_parts_all_or_nothing_and_survives_a_restart() {
    let mut d = Daemon::start();
    d.ok(&["network", "add", "100"]);
    d.ok(&["port", "add", "vm1", "net_null0,no-rx=1", "--role", "vm", "--vni", "100"]);
    d.ok(&["port", "add", "vm2", "net_null1,no-rx=1", "--role", "vm", "--vni", "100"]);
    let file = d.dir.path("rules.txt");
    std::fs::write(&file, rules(10_000, None)).unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() > 600_000);
    let out = d.ok(&["acl", "load", file.to_str().unwrap()]);
    assert!(out.contains("loaded 10000 rules"), "{out}");
    let listed = d.json(&["acl", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 10_000);

    // One bad line at the end: nothing installed, and the line named.
    let bad = d.dir.path("bad.txt");
    std::fs::write(&bad, rules(10_000, Some(9_999))).unwrap();
    let e = d.err(&["acl", "load", bad.to_str().unwrap()]);
    assert!(e.contains("line 10000") && e.contains("src:") && e.contains("nothing was installed"), "{e}");
    assert_eq!(d.json(&["acl", "list"]), listed);

    d.restart();
    let after = d.json(&["acl", "list"]);
    let specs = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut().unwrap().remove("hits");
                r
            })
            .collect()
    };
    assert_eq!(specs(&after), specs(&listed));
}
