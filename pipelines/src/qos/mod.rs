//! QoS: colour-blind single-rate (RFC 2697) and two-rate (RFC 2698) three-colour
//! meters, in bytes or packets, with an action per colour; DSCP rewriting.
//!
//! Meters keep integer token counts scaled by the clock rate, so no float and no
//! rounding drift: a bucket holds `tokens * hz`, and `dt` ticks at `rate` units per
//! second add `rate * dt`. The clock is whatever the caller passes (TSC on the cores, a
//! simulated one in tests).
use crate::{acl::Direction, clock::Clock, meta::Meta, wire::ipv4, Frame};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Packets,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// RFC 2697: committed rate; committed and excess bursts.
    SrTcm { cir: u64, cbs: u64, ebs: u64 },
    /// RFC 2698: committed and peak rates and bursts.
    TrTcm { cir: u64, cbs: u64, pir: u64, pbs: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorAction {
    Pass,
    /// Rewrite the DSCP (0..63) and pass.
    Remark(u8),
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    Green,
    Yellow,
    Red,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeterConfig {
    pub unit: Unit,
    pub mode: Mode,
    pub yellow: ColorAction,
    pub red: ColorAction,
}

impl MeterConfig {
    /// What a colour means for the packet.
    pub fn action(&self, c: Color) -> ColorAction {
        match c {
            Color::Green => ColorAction::Pass,
            Color::Yellow => self.yellow,
            Color::Red => self.red,
        }
    }

    /// Tokens (scaled by `hz`, as the buckets hold them) that `packets` packets of
    /// `bytes` in all take, in this meter's unit.
    #[inline(always)]
    fn tokens(&self, bytes: u64, packets: u64, hz: u64) -> u128 {
        let n = match self.unit {
            Unit::Bytes => bytes,
            Unit::Packets => packets,
        };
        n as u128 * hz as u128
    }
}

/// One meter's buckets. Starts full.
#[derive(Clone, Copy, Debug, Default)]
pub struct MeterState {
    /// Committed bucket, scaled by hz.
    tc: u128,
    /// Excess (srTCM) or peak (trTCM) bucket, scaled by hz.
    te: u128,
    last: u64,
}

impl MeterState {
    pub fn new(cfg: &MeterConfig, now: u64, hz: u64) -> MeterState {
        let (cbs, second) = match cfg.mode {
            Mode::SrTcm { cbs, ebs, .. } => (cbs, ebs),
            Mode::TrTcm { cbs, pbs, .. } => (cbs, pbs),
        };
        MeterState { tc: cbs as u128 * hz as u128, te: second as u128 * hz as u128, last: now }
    }

    /// Colours a packet of `size` (bytes, or 1 in packet mode) arriving at `now`.
    #[inline]
    pub fn color(&mut self, cfg: &MeterConfig, now: u64, hz: u64, size: u64) -> Color {
        self.refill(cfg, now, hz);
        self.take(cfg, cfg.tokens(size, 1, hz))
    }

    /// Colours `packets` packets of `bytes` in all, arriving together at `now`, green
    /// if every one of them would be: exactly what colouring them one by one gives when
    /// all come out green. Otherwise changes nothing but the refill, and returns false.
    #[inline]
    pub fn all_green(&mut self, cfg: &MeterConfig, now: u64, hz: u64, bytes: u64, packets: u64) -> bool {
        self.refill(cfg, now, hz);
        let need = cfg.tokens(bytes, packets, hz);
        match cfg.mode {
            // Green takes from Tc alone.
            Mode::SrTcm { .. } if self.tc >= need => self.tc -= need,
            // Green takes from both buckets.
            Mode::TrTcm { .. } if self.tc >= need && self.te >= need => {
                self.tc -= need;
                self.te -= need;
            }
            _ => return false,
        }
        true
    }

    /// Adds the tokens earned since the last packet.
    #[inline]
    fn refill(&mut self, cfg: &MeterConfig, now: u64, hz: u64) {
        let dt = now.saturating_sub(self.last) as u128;
        self.last = self.last.max(now);
        let hz = hz as u128;
        // The rest of a burst shares its clock reading: nothing to refill.
        if dt != 0 {
            match cfg.mode {
                Mode::SrTcm { cir, cbs, ebs } => {
                    // Tokens fill Tc first; what overflows Tc fills Te.
                    let cap_c = cbs as u128 * hz;
                    let add = cir as u128 * dt;
                    let into_c = add.min(cap_c - self.tc.min(cap_c));
                    self.tc += into_c;
                    self.te = (self.te + (add - into_c)).min(ebs as u128 * hz);
                }
                Mode::TrTcm { cir, cbs, pir, pbs } => {
                    self.tc = (self.tc + cir as u128 * dt).min(cbs as u128 * hz);
                    self.te = (self.te + pir as u128 * dt).min(pbs as u128 * hz);
                }
            }
        }
    }

    /// Colours a packet needing `need` scaled tokens, without refilling first.
    #[inline]
    fn take(&mut self, cfg: &MeterConfig, need: u128) -> Color {
        match cfg.mode {
            Mode::SrTcm { .. } => {
                if self.tc >= need {
                    self.tc -= need;
                    Color::Green
                } else if self.te >= need {
                    self.te -= need;
                    Color::Yellow
                } else {
                    Color::Red
                }
            }
            Mode::TrTcm { .. } => {
                if self.te < need {
                    Color::Red
                } else if self.tc < need {
                    self.te -= need;
                    Color::Yellow
                } else {
                    self.te -= need;
                    self.tc -= need;
                    Color::Green
                }
            }
        }
    }
}

/// Rewrites the DSCP of an IP packet (keeping ECN), updating the IPv4 header checksum.
/// Returns false if the frame is not IP.
pub fn set_dscp<F: Frame>(f: &mut F, m: &mut Meta, dscp: u8) -> bool {
    let l3 = m.l3 as usize;
    let tos = (dscp << 2) | (m.tos & 3);
    let b = f.head_mut();
    match m.ip_version {
        4 => {
            let Some(h) = b.get_mut(l3..l3 + ipv4::MIN_LEN) else { return false };
            let old = u16::from_be_bytes([h[0], h[1]]);
            h[1] = tos;
            let new = u16::from_be_bytes([h[0], h[1]]);
            crate::wire::update_checksum(&mut h[ipv4::CHECKSUM..ipv4::CHECKSUM + 2], old, new);
        }
        6 => {
            let Some(h) = b.get_mut(l3..l3 + 2) else { return false };
            h[0] = (h[0] & 0xf0) | (tos >> 4);
            h[1] = (h[1] & 0x0f) | (tos << 4);
        }
        _ => return false,
    }
    m.tos = tos;
    true
}

/// Meters per port id and direction, as configured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortQos {
    /// Policer on what the VM sends.
    pub ingress: Option<MeterConfig>,
    /// Rate limiter on what the VM receives.
    pub egress: Option<MeterConfig>,
    /// DSCP of the outer header when this port's traffic is encapsulated (default: the
    /// inner packet's).
    pub outer_dscp: Option<u8>,
    /// Changes whenever the meters change: cores restart their buckets.
    pub version: u64,
}

#[derive(Debug, Default)]
pub struct QosTables {
    pub ports: Vec<PortQos>,
}

impl QosTables {
    #[inline]
    pub fn port(&self, p: crate::PortId) -> Option<&PortQos> {
        self.ports.get(p as usize)
    }
}

/// A core's meter buckets: per port id, ingress and egress, with the config version
/// they were filled for.
#[derive(Default)]
pub struct Meters {
    slots: Vec<[(u64, MeterState); 2]>,
}

impl Meters {
    /// What to do with a packet of `size` on port `p` going `dir`, per the port's meter
    /// for that direction (pass when it has none).
    #[inline]
    pub fn act(&mut self, qos: &PortQos, p: crate::PortId, dir: Direction, clock: Clock, size: u64) -> ColorAction {
        let Some((cfg, state)) = self.state(qos, p, dir, clock) else { return ColorAction::Pass };
        cfg.action(state.color(&cfg, clock.now, clock.hz, size))
    }

    /// True when every one of `packets` packets (`bytes` in all) on port `p` going
    /// `dir` is green, taking their tokens in one step: a policer with room to spare
    /// costs one check per burst. False (nothing taken) sends the caller to `act` per
    /// packet.
    #[inline]
    pub fn all_green(
        &mut self,
        qos: &PortQos,
        p: crate::PortId,
        dir: Direction,
        clock: Clock,
        bytes: u64,
        packets: u64,
    ) -> bool {
        let Some((cfg, state)) = self.state(qos, p, dir, clock) else { return true };
        state.all_green(&cfg, clock.now, clock.hz, bytes, packets)
    }

    /// The meter configured for (p, dir) and this core's buckets for it, (re)started
    /// when the configuration changed.
    #[inline]
    fn state(
        &mut self,
        qos: &PortQos,
        p: crate::PortId,
        dir: Direction,
        clock: Clock,
    ) -> Option<(MeterConfig, &mut MeterState)> {
        let (cfg, d) = match dir {
            Direction::In => (qos.ingress, 0),
            Direction::Out => (qos.egress, 1),
        };
        let cfg = cfg?;
        let i = p as usize;
        if self.slots.len() <= i {
            // Grows once per new port id, never on the steady path.
            self.slots.resize(i + 1, [(u64::MAX, MeterState::default()); 2]);
        }
        let (version, state) = &mut self.slots[i][d];
        if *version != qos.version {
            *version = qos.version;
            *state = MeterState::new(&cfg, clock.now, clock.hz);
        }
        Some((cfg, state))
    }
}

#[cfg(test)]
mod tests;
