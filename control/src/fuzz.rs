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
