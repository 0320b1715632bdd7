//! A running `capture`: lends the cores buffers, collects their copies, and answers the
//! request when it has `count` packets or its time is up.
pub mod api;
pub mod cli;

use crate::api::Response;
use api::{CaptureDir, CaptureSpec, CaptureView, CapturedPacket};
use dataplane::{
    capture::{CaptureTap, Captured, CAPTURE_RING, SNAP_MAX},
    pmd::Shared,
};
use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::sync::oneshot;

/// The most packets one capture returns.
pub const MAX_COUNT: u32 = 100_000;
/// The longest a capture waits for its packets.
pub const MAX_TIMEOUT_S: u32 = 3600;

pub struct CaptureRun {
    pub port: String,
    pub tap: CaptureTap,
    count: u32,
    deadline: Instant,
    /// TSC and wall clock at the start, to date the packets.
    tsc0: u64,
    wall0_ns: u64,
    tsc_hz: u64,
    lost0: u64,
    packets: Vec<CapturedPacket>,
    pub reply: oneshot::Sender<Response>,
}

impl CaptureRun {
    /// Refuses a request out of range, naming the field.
    pub fn check(spec: &CaptureSpec) -> Result<(), String> {
        if spec.count == 0 || spec.count > MAX_COUNT {
            return Err(format!("count: {} is out of range; capture 1 to {MAX_COUNT} packets", spec.count));
        }
        let snaplen = spec.snaplen.unwrap_or(SNAP_MAX as u16);
        if snaplen == 0 || snaplen as usize > SNAP_MAX {
            return Err(format!("snaplen: {snaplen} is out of range; keep 1 to {SNAP_MAX} bytes per packet"));
        }
        let timeout = spec.timeout_s.unwrap_or(10);
        if timeout == 0 || timeout > MAX_TIMEOUT_S {
            return Err(format!("timeout: {timeout} s is out of range; give 1 to {MAX_TIMEOUT_S} seconds"));
        }
        Ok(())
    }

    /// Lends every core its buffers for a checked request. `port_id` is the running
    /// port's ethdev id.
    pub fn start(spec: CaptureSpec, port_id: u16, shared: &Shared, reply: oneshot::Sender<Response>) -> CaptureRun {
        let snaplen = spec.snaplen.unwrap_or(SNAP_MAX as u16);
        let timeout = spec.timeout_s.unwrap_or(10);
        for ring in shared.capture.rings.iter() {
            // Leftovers of an earlier capture are dropped here, never reused mid-flight.
            while ring.full.pop().is_some() {}
            while ring.free.len() < CAPTURE_RING {
                let _ = ring.free.push(Captured::new());
            }
        }
        shared.capture.wanted.store(spec.count as i64, Relaxed);
        let (rx, tx) = match spec.dir {
            CaptureDir::Rx => (true, false),
            CaptureDir::Tx => (false, true),
            CaptureDir::Both => (true, true),
        };
        CaptureRun {
            tap: CaptureTap { port: port_id, rx, tx, snaplen },
            count: spec.count,
            deadline: Instant::now() + Duration::from_secs(timeout as u64),
            tsc0: dataplane::tsc(),
            wall0_ns: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
            tsc_hz: shared.tsc_hz.max(1),
            lost0: lost(shared),
            packets: Vec::new(),
            port: spec.port,
            reply,
        }
    }

    /// Takes what the cores copied, handing their buffers back. True once the capture
    /// has all its packets or its time is up.
    pub fn collect(&mut self, shared: &Shared) -> bool {
        for ring in shared.capture.rings.iter() {
            while let Some(c) = ring.full.pop() {
                if self.packets.len() < self.count as usize {
                    self.packets.push(self.packet(&c));
                }
                let _ = ring.free.push(c);
            }
        }
        self.packets.len() >= self.count as usize || Instant::now() >= self.deadline
    }

    /// Call once the cores no longer see the tap: takes the last copies, frees the
    /// buffers and answers the request.
    pub fn finish(mut self, shared: &Shared) {
        shared.capture.wanted.store(0, Relaxed);
        self.collect(shared);
        for ring in shared.capture.rings.iter() {
            while ring.free.pop().is_some() {}
        }
        let view = CaptureView {
            complete: self.packets.len() >= self.count as usize,
            port: self.port,
            packets: self.packets,
            lost: lost(shared).wrapping_sub(self.lost0),
        };
        let _ = self.reply.send(Response::ok(serde_json::to_value(&view).unwrap_or_default()));
    }

    fn packet(&self, c: &Captured) -> CapturedPacket {
        let since = c.tsc.wrapping_sub(self.tsc0) as u128 * 1_000_000_000 / self.tsc_hz as u128;
        CapturedPacket {
            ts_ns: self.wall0_ns + since as u64,
            dir: if c.tx { "tx" } else { "rx" }.into(),
            orig_len: c.orig_len,
            data: crate::trace::to_hex(c.bytes()),
        }
    }
}

fn lost(shared: &Shared) -> u64 {
    shared.counters.iter().map(|c| c.capture_lost.get()).sum()
}
