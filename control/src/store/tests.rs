use super::*;
use crate::api::{AclAction, NetworkSpec, PortSpec};
use serde_json::json;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vswitch-store-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn network(vni: u32) -> NetworkSpec {
    NetworkSpec { vni, name: None, max_macs: None, aging: None, flood_vteps: vec![], gateway: vec![], snat: false }
}

fn port(name: &str) -> PortSpec {
    PortSpec {
        name: name.into(),
        devargs: format!("net_null_{name}"),
        queues: None,
        cores: None,
        mtu: None,
        role: None,
        vni: None,
        admin: Default::default(),
    }
}

/// Commits one record per change and keeps the model the store must match.
fn churn(store: &mut Store, model: &mut DesiredState, n: u32) {
    for i in 0..n {
        let vni = 1 + i % 50;
        if model.networks.iter().any(|x| x.vni == vni) {
            model.networks.retain(|x| x.vni != vni);
            store.stage([Change::del("networks", json!(vni))]);
        } else {
            model.networks.push(network(vni));
            store.stage([Change::put("networks", &network(vni))]);
        }
        store.commit_blocking().unwrap();
    }
}

fn sorted(mut s: DesiredState) -> DesiredState {
    s.networks.sort_by_key(|n| n.vni);
    s
}

#[test]
fn missing_files_are_an_empty_state_and_commits_read_back() {
    let d = tmpdir("empty");
    let db = d.join("sub/conf.json");
    let (mut store, state) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
    assert_eq!(state, DesiredState::new());
    let mut model = DesiredState::new();
    model.ports.push(port("a"));
    model.ports.push(port("b"));
    store.stage([Change::put("ports", &port("a")), Change::put("ports", &port("b"))]);
    store.commit_blocking().unwrap();
    model.acl_defaults.insert("a".into(), AclAction::Deny);
    store.stage([Change::put_named("acl_defaults", "a", &AclAction::Deny)]);
    store.commit_blocking().unwrap();
    churn(&mut store, &mut model, 120);
    drop(store);
    let first: DesiredState = serde_json::from_slice(&fs::read(&db).unwrap()).unwrap();
    assert_eq!(first, DesiredState::new(), "the first start writes the empty state file");
    let (_, back) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
    assert_eq!(sorted(back), sorted(model));
}

#[test]
fn a_state_file_from_before_the_journal_is_read_and_gets_one() {
    let d = tmpdir("migrate");
    let db = d.join("conf.json");
    let old = r#"{"format":1,"ports":[{"name":"a","devargs":"net_null0"}],"networks":[{"vni":7}]}"#;
    fs::write(&db, old).unwrap();
    let (mut store, state) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
    assert_eq!(state.ports[0].name, "a");
    assert_eq!(state.networks[0].vni, 7);
    assert!(store.journal_path().exists());
    assert_eq!(fs::read_to_string(&db).unwrap(), old, "the old file is the snapshot, untouched");
    store.stage([Change::del("networks", json!(7))]);
    store.commit_blocking().unwrap();
    drop(store);
    let (_, back) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
    assert!(back.networks.is_empty() && back.ports.len() == 1);
}

#[test]
fn compaction_moves_the_journal_into_the_snapshot() {
    let d = tmpdir("compact");
    let db = d.join("conf.json");
    let (mut store, _) = Store::open(&db, 2048).unwrap();
    let mut model = DesiredState::new();
    let mut compactions = 0;
    for _ in 0..20 {
        churn(&mut store, &mut model, 7);
        if store.wants_compaction() {
            store.compact(&sorted(model.clone())).unwrap();
            compactions += 1;
            assert_eq!(store.journal_len(), journal::HEADER_LEN as u64);
        }
    }
    assert!(compactions >= 2, "{compactions}");
    drop(store);
    let (_, back) = Store::open(&db, 2048).unwrap();
    assert_eq!(sorted(back), sorted(model.clone()));
    assert!(!with_suffix(&db, ".journal.next").exists());
}

/// Each point a compaction can stop at (a crash between its steps) reads back as the
/// committed state.
#[test]
fn a_compaction_stopped_at_any_step_loses_nothing() {
    for stop_after in 1..=3 {
        let d = tmpdir(&format!("cstop{stop_after}"));
        let db = d.join("conf.json");
        let (mut store, _) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
        let mut model = DesiredState::new();
        churn(&mut store, &mut model, 30);
        let next = with_suffix(&db, ".journal.next");
        let journal = with_suffix(&db, ".journal");
        // The steps of `compact`, by hand, stopping after `stop_after`.
        let mut bytes = serde_json::to_vec_pretty(&sorted(model.clone())).unwrap();
        bytes.push(b'\n');
        fs::write(&next, journal::header(Base::of(&bytes))).unwrap();
        if stop_after >= 2 {
            fs::write(&db, &bytes).unwrap();
        }
        if stop_after >= 3 {
            fs::rename(&next, &journal).unwrap();
        }
        drop(store);
        let (mut store, back) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
        assert_eq!(sorted(back), sorted(model.clone()), "stopped after step {stop_after}");
        assert!(!next.exists(), "step {stop_after}: the leftover is gone");
        // And it goes on working.
        churn(&mut store, &mut model, 5);
        drop(store);
        let (_, back) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
        assert_eq!(sorted(back), sorted(model), "after step {stop_after} and more changes");
    }
}

#[test]
fn a_torn_tail_is_dropped_and_cut_off() {
    let d = tmpdir("torn");
    let db = d.join("conf.json");
    let (mut store, _) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
    let mut model = DesiredState::new();
    churn(&mut store, &mut model, 10);
    let good = store.journal_len();
    drop(store);
    let journal = with_suffix(&db, ".journal");
    // Half of one more record, as a crash mid-write leaves it.
    let rec = journal::record(&Record { seq: 11, changes: vec![Change::put("networks", &network(999))] });
    let mut f = fs::OpenOptions::new().append(true).open(&journal).unwrap();
    f.write_all(&rec[..rec.len() / 2]).unwrap();
    drop(f);
    let (mut store, back) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
    assert_eq!(sorted(back), sorted(model.clone()));
    assert_eq!(fs::metadata(&journal).unwrap().len(), good, "cut back to the last whole record");
    churn(&mut store, &mut model, 3);
    drop(store);
    assert_eq!(sorted(Store::load(&db).unwrap()), sorted(model));
}

#[test]
fn a_flipped_bit_mid_journal_is_refused_with_file_and_offset_and_left_alone() {
    let d = tmpdir("flip");
    let db = d.join("conf.json");
    let (mut store, _) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
    let mut model = DesiredState::new();
    churn(&mut store, &mut model, 10);
    drop(store);
    let journal = with_suffix(&db, ".journal");
    let mut bytes = fs::read(&journal).unwrap();
    // Inside the second record's payload.
    let first_len = journal::RECORD_HEADER_LEN
        + u32::from_le_bytes(bytes[journal::HEADER_LEN + 4..journal::HEADER_LEN + 8].try_into().unwrap()) as usize;
    let second = journal::HEADER_LEN + first_len;
    bytes[second + journal::RECORD_HEADER_LEN + 3] ^= 0x10;
    fs::write(&journal, &bytes).unwrap();
    let err = Store::open(&db, DEFAULT_COMPACT_MIN).err().expect("refused").to_string();
    assert!(err.contains(&journal.display().to_string()), "{err}");
    assert!(err.contains(&format!("offset {second}")), "{err}");
    assert_eq!(fs::read(&journal).unwrap(), bytes, "never overwritten");
}

#[test]
fn a_journal_of_another_snapshot_is_refused() {
    let d = tmpdir("mismatch");
    let db = d.join("conf.json");
    let (mut store, _) = Store::open(&db, DEFAULT_COMPACT_MIN).unwrap();
    let mut model = DesiredState::new();
    churn(&mut store, &mut model, 3);
    drop(store);
    fs::write(&db, r#"{"format":1}"#).unwrap();
    let err = Store::open(&db, DEFAULT_COMPACT_MIN).err().expect("refused").to_string();
    assert!(err.contains("does not belong"), "{err}");
}

#[test]
fn corrupt_or_truncated_snapshot_is_refused_and_kept() {
    let d = tmpdir("corrupt");
    let p = d.join("conf.json");
    fs::write(&p, "{\"format\":1,\"ports\":[{\"name\":\"a\"").unwrap();
    let err = Store::open(&p, DEFAULT_COMPACT_MIN).err().unwrap().to_string();
    assert!(err.contains(&p.display().to_string()) && err.contains("corrupt"), "{err}");
    assert!(fs::read_to_string(&p).unwrap().starts_with("{\"format\":1"));
    fs::write(&p, "{\"format\":99}").unwrap();
    assert!(Store::open(&p, DEFAULT_COMPACT_MIN).err().unwrap().to_string().contains("format 99"));
}
