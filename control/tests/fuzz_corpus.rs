//! Every fuzz target's corpus and every input a fuzzer ever crashed on, replayed
//! through the target's body (in `control::fuzz`), plus a few thousand inputs of a fixed
//! generator so each target runs here even with an empty corpus. `scripts/fuzz.sh`
//! runs the fuzzers themselves.
include!("../../fuzz/replay.rs");

#[test]
fn api_request() {
    replay("api_request", control::fuzz::api_request);
}

#[test]
fn journal() {
    replay("journal", control::fuzz::journal);
}

#[test]
fn state_file() {
    replay("state_file", control::fuzz::state_file);
}

#[test]
fn rule_file() {
    replay("rule_file", control::fuzz::rule_file);
}

#[test]
fn cni_add() {
    replay("cni_add", control::fuzz::cni_add);
}

#[test]
fn cluster_store() {
    replay("cluster_store", control::fuzz::cluster_store);
}

#[test]
fn trace() {
    replay("trace", control::fuzz::trace);
}

#[test]
fn requests() {
    replay("requests", control::fuzz::requests);
}
