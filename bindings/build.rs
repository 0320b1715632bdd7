//! Binds the system DPDK found by pkg-config and compiles the static-inline shim.
use std::{env, path::PathBuf, process::Command};

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("cannot run pkg-config ({e}); install pkg-config and libdpdk-dev"));
    if !out.status.success() {
        panic!(
            "pkg-config cannot find libdpdk: {}\ninstall DPDK 22.11: apt-get install dpdk dpdk-dev libdpdk-dev",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `-include rte_config.h` is two words that must stay in order; split on whitespace keeps that.
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let cflags = pkg_config(&["--cflags"]);

    let mut shim = cc::Build::new();
    shim.file(manifest.join("shim.c")).include(&manifest).opt_level(3).warnings(false);
    for f in &cflags {
        shim.flag(f);
    }
    shim.compile("vswitch_dpdk_shim");

    for word in pkg_config(&["--libs"]) {
        if let Some(dir) = word.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = word.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
    // rte_vdev_init/uninit live here, and pkg-config does not list it.
    println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
    // The vhost PMD's own API (a port's vhost device id); EAL loads the same file as a
    // plugin, which the dynamic loader then finds already mapped.
    println!("cargo:rustc-link-lib=dylib=rte_net_vhost");

    let bindings = bindgen::Builder::default()
        .header(manifest.join("wrapper.h").to_string_lossy())
        .clang_args(cflags.iter().map(String::as_str))
        .clang_arg(format!("-I{}", manifest.display()))
        .allowlist_function("rte_.*|__rte_.*|vs_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        // A C enum holding a value with no Rust variant is UB; constants are not.
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .no_debug("rte_flow_item_gtp_psc")
        .derive_default(true)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on the DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings.write_to_file(out.join("bindings.rs")).expect("cannot write bindings.rs");
}
