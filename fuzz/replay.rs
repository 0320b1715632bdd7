// Shared by pipelines/tests/fuzz_corpus.rs and control/tests/fuzz_corpus.rs (include!).

/// A target's corpus and past crashes (`fuzz/corpus/<target>/`,
/// `fuzz/regressions/<target>/`), and a few thousand inputs of a fixed generator.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for e in entries.flatten() {
            out.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap()));
        }
    }
    // A fixed generator: lengths 0..600, bytes from an LCG.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for i in 0..3000 {
        let len = (i * 7) % 600;
        let bytes = (0..len)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        out.push((format!("generated #{i}"), bytes));
    }
    out
}

/// Every input through a target's body: none may panic.
fn replay(target: &str, body: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(inputs.len() >= 3000, "{target}: the generated inputs are there");
    for (name, data) in inputs {
        let r = std::panic::catch_unwind(|| body(&data));
        assert!(r.is_ok(), "fuzz target {target} fails on {name}");
    }
}
