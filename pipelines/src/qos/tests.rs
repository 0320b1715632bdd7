use super::*;
use crate::{acl::Direction, learn::Clock};

const HZ: u64 = 2_000_000_000; // a 2 GHz TSC, simulated

fn tr(cir: u64, cbs: u64, pir: u64, pbs: u64) -> MeterConfig {
    MeterConfig {
        unit: Unit::Bytes,
        mode: Mode::TrTcm { cir, cbs, pir, pbs },
        yellow: ColorAction::Pass,
        red: ColorAction::Drop,
    }
}

fn sr(cir: u64, cbs: u64, ebs: u64) -> MeterConfig {
    MeterConfig {
        unit: Unit::Bytes,
        mode: Mode::SrTcm { cir, cbs, ebs },
        yellow: ColorAction::Pass,
        red: ColorAction::Drop,
    }
}

/// Offers `load` bytes/s of `size`-byte packets for `secs` simulated seconds; returns
/// bytes of each colour.
fn offer(cfg: &MeterConfig, load: u64, size: u64, secs: u64) -> [u64; 3] {
    let mut m = MeterState::new(cfg, 0, HZ);
    let n = load * secs / size;
    let gap = HZ as u128 * size as u128 / load as u128;
    let mut out = [0u64; 3];
    for i in 0..n {
        let now = (i as u128 * gap) as u64;
        let c = m.color(cfg, now, HZ, size);
        out[c as usize] += size;
    }
    out
}

#[test]
fn srtcm_at_twice_the_rate_passes_the_rate_within_2_percent() {
    let rate = 12_500_000; // 100 Mbit/s in bytes
    for size in [64u64, 512, 1500] {
        let cfg = sr(rate, 64 * 1024, 0);
        let [green, yellow, red] = offer(&cfg, 2 * rate, size, 60);
        assert_eq!(yellow, 0, "EBS 0: no yellow");
        let passed = green as f64 / 60.0;
        assert!((passed / rate as f64 - 1.0).abs() < 0.02, "{size}-byte packets: {passed} B/s for {rate}");
        assert!(red > 0);
    }
}

#[test]
fn the_committed_burst_passes_whole() {
    let cfg = sr(1_000_000, 100_000, 0);
    let mut m = MeterState::new(&cfg, 0, HZ);
    // 100 packets of 1000 bytes at the same instant: exactly the burst.
    let colors: Vec<Color> = (0..101).map(|_| m.color(&cfg, 0, HZ, 1000)).collect();
    assert!(colors[..100].iter().all(|c| *c == Color::Green));
    assert_eq!(colors[100], Color::Red);
}

#[test]
fn srtcm_excess_burst_is_yellow() {
    let cfg = sr(1_000_000, 10_000, 20_000);
    let mut m = MeterState::new(&cfg, 0, HZ);
    let colors: Vec<Color> = (0..31).map(|_| m.color(&cfg, 0, HZ, 1000)).collect();
    assert_eq!(colors.iter().filter(|c| **c == Color::Green).count(), 10);
    assert_eq!(colors.iter().filter(|c| **c == Color::Yellow).count(), 20);
    assert_eq!(colors[30], Color::Red);
}

#[test]
fn trtcm_separates_committed_peak_and_beyond() {
    // CIR 1 MB/s, PIR 2 MB/s; offered 4 MB/s for 30 s.
    let cfg = tr(1_000_000, 10_000, 2_000_000, 20_000);
    let [g, y, r] = offer(&cfg, 4_000_000, 1000, 30);
    let (g, y, r) = (g as f64 / 30.0, y as f64 / 30.0, r as f64 / 30.0);
    assert!((g / 1e6 - 1.0).abs() < 0.02, "green {g}");
    assert!((y / 1e6 - 1.0).abs() < 0.02, "yellow {y} (peak minus committed)");
    assert!((r / 2e6 - 1.0).abs() < 0.02, "red {r}");
}

#[test]
fn packet_mode_counts_packets() {
    let cfg = MeterConfig { unit: Unit::Packets, mode: Mode::SrTcm { cir: 50_000, cbs: 32, ebs: 0 }, ..sr(0, 0, 0) };
    let [g, _, _] = offer(&MeterConfig { ..cfg }, 100_000 * 64, 64, 20);
    let pps = g as f64 / 64.0 / 20.0;
    assert!((pps / 50_000.0 - 1.0).abs() < 0.02, "{pps} pps");
}

#[test]
fn dscp_rewrite_keeps_ecn_and_the_checksum_right() {
    let mut b = vec![0u8; 14];
    b[12] = 8;
    b.extend_from_slice(&[0x45, 0x02, 0, 20, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    let c = crate::wire::checksum(crate::wire::ones_sum(&b[14..34]));
    b[24..26].copy_from_slice(&c.to_be_bytes());
    let mut f = crate::VecFrame::new(&b);
    let mut m = Meta::default();
    crate::parse::parse(&b, &mut m);
    assert!(set_dscp(&mut f, &mut m, 46));
    let out = f.bytes();
    assert_eq!(out[15], (46 << 2) | 2, "EF, ECN kept");
    assert_eq!(crate::wire::ones_sum(&out[14..34]), 0xffff, "checksum still right");
    // IPv6: traffic class spans two bytes.
    let mut v6 = vec![0u8; 14];
    v6[12] = 0x86;
    v6[13] = 0xdd;
    v6.extend_from_slice(&[0x60, 0x10, 0, 0, 0, 0, 17, 64]);
    v6.extend_from_slice(&[0; 32]);
    let mut f = crate::VecFrame::new(&v6);
    crate::parse::parse(&v6, &mut m);
    assert!(set_dscp(&mut f, &mut m, 10));
    assert_eq!((f.bytes()[14], f.bytes()[15] >> 4), (0x62, 0x9), "TC 0x29: DSCP 10, ECN 01 kept, version nibble kept");
}

#[test]
fn a_new_config_version_refills_the_buckets() {
    let cfg = sr(1_000, 1_000, 0);
    let mut q = PortQos { ingress: Some(cfg), version: 1, ..Default::default() };
    let mut meters = Meters::default();
    let at0 = Clock { now: 0, hz: HZ };
    assert_eq!(meters.act(&q, 3, Direction::In, at0, 1000), ColorAction::Pass);
    assert_eq!(meters.act(&q, 3, Direction::In, at0, 1000), ColorAction::Drop);
    assert_eq!(meters.act(&q, 3, Direction::Out, at0, 1000), ColorAction::Pass, "no egress meter");
    q.version = 2;
    assert_eq!(meters.act(&q, 3, Direction::In, at0, 1000), ColorAction::Pass, "refilled");
}

/// A burst taken whole agrees with colouring it packet by packet: green whole exactly
/// when each packet would be, with the same buckets after; otherwise nothing taken.
#[test]
fn a_whole_burst_is_green_exactly_when_each_packet_would_be() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for cfg in [sr(1000, 3000, 2000), tr(1000, 3000, 2000, 5000)] {
        let (mut whole, mut each) = (MeterState::new(&cfg, 0, HZ), MeterState::new(&cfg, 0, HZ));
        let mut now = 0;
        for _ in 0..2000 {
            now += rnd(HZ / 2);
            let sizes: Vec<u64> = (0..1 + rnd(32)).map(|_| 60 + rnd(1400)).collect();
            let green = whole.all_green(&cfg, now, HZ, sizes.iter().sum(), sizes.len() as u64);
            let mut probe = each;
            let each_green = sizes.iter().all(|&s| probe.color(&cfg, now, HZ, s) == Color::Green);
            assert_eq!(green, each_green);
            if green {
                each = probe;
            } else {
                // The caller then colours packet by packet, from the same buckets.
                for &s in &sizes {
                    assert_eq!(whole.color(&cfg, now, HZ, s), each.color(&cfg, now, HZ, s));
                }
            }
            assert_eq!((whole.tc, whole.te, whole.last), (each.tc, each.te, each.last));
        }
    }
}
