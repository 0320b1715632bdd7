//! vswitch-cni: the CNI plugin (type "vswitch"). Install it where runtimes look for
//! plugins (/usr/lib/cni or /opt/cni/bin); docs in control/src/cni/plugin.rs.
fn main() -> std::process::ExitCode {
    control::cni::plugin::main()
}
