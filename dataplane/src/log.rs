//! DPDK's log goes through `tracing`, and the lines logged during one control
//! operation can be collected so an error the user sees carries the driver's
//! own explanation ("Couldn't open /x.pcap", "Invalid devargs"...).
use std::sync::Mutex;

static CAPTURE: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// Routes DPDK's log stream through `tracing` (target `dpdk`). Call before EAL init
/// so EAL's own complaints are seen too.
pub fn route_to_tracing() {
    // SAFETY: write_line is a valid callback for the life of the process.
    unsafe { dpdk_sys::vs_log_route(Some(write_line)) };
}

unsafe extern "C" fn write_line(buf: *const libc::c_char, len: usize) -> libc::c_long {
    if buf.is_null() || len == 0 {
        return 0;
    }
    // SAFETY: stdio hands us `len` readable bytes at `buf` for the duration of the call.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
    // SAFETY: reads the level of the message being logged on this thread.
    let level = unsafe { dpdk_sys::rte_log_cur_msg_loglevel() };
    for line in String::from_utf8_lossy(bytes).lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        match level {
            1..=4 => tracing::error!(target: "dpdk", "{line}"),
            5 => tracing::warn!(target: "dpdk", "{line}"),
            6 | 7 => tracing::info!(target: "dpdk", "{line}"),
            _ => tracing::debug!(target: "dpdk", "{line}"),
        }
        if level <= 5 {
            if let Ok(mut cap) = CAPTURE.lock() {
                if let Some(lines) = cap.as_mut() {
                    if lines.len() < 16 {
                        lines.push(line.to_owned());
                    }
                }
            }
        }
    }
    len as libc::c_long
}

/// Runs `f` and returns, beside its result, the warnings and errors DPDK logged meanwhile.
/// Control-plane operations are serialised, so lines from other threads are rare and
/// are at worst extra context.
pub fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    if let Ok(mut cap) = CAPTURE.lock() {
        *cap = Some(Vec::new());
    }
    let out = f();
    let lines = CAPTURE.lock().ok().and_then(|mut c| c.take()).unwrap_or_default();
    (out, lines)
}
