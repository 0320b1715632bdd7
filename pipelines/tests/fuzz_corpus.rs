//! Every fuzz target's corpus and every input a fuzzer ever crashed on, replayed
//! through the target's body (in `pipelines::fuzz`), plus a few thousand inputs of a fixed
//! generator so each target runs here even with an empty corpus. `scripts/fuzz.sh`
//! runs the fuzzers themselves.
include!("../../fuzz/replay.rs");

#[test]
fn parse() {
    replay("parse", pipelines::fuzz::parse);
}

#[test]
fn vxlan_decap() {
    replay("vxlan_decap", pipelines::fuzz::vxlan_decap);
}

#[test]
fn acl_differential() {
    replay("acl_differential", pipelines::fuzz::acl_differential);
}

#[test]
fn pipeline() {
    replay("pipeline", pipelines::fuzz::pipeline);
}

#[test]
fn offload() {
    replay("offload", pipelines::fuzz::offload);
}

#[test]
fn conntrack() {
    replay("conntrack", pipelines::conntrack::fuzz::tracker);
}
