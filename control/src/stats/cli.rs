//! vswitchctl's verbs about the switch itself: the summary, counters, cores.
use super::api::{CoreView, ShowView, StatsRequest, StatsView};
use crate::{
    api::Request,
    cli::{from, header, table, Verb},
    overlay::cli::{print_networks, print_vtep},
    ports::cli::{print_port_stats, print_ports},
};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum StatsCmd {
    /// Summary: ports, cross-connects, cores, mempool.
    #[command(after_help = "Example:\n  vswitchctl show\n  vswitchctl --json show")]
    Show,
    /// Counters per port and per core, drops by reason, mempool use.
    #[command(after_help = "Example:\n  vswitchctl stats\n  vswitchctl --json stats | jq .ports")]
    Stats,
    /// Per PMD core: rx queues, busy %, cycles per packet, time inside the switch.
    #[command(after_help = "Examples:\n  vswitchctl cores\n  vswitchctl cores --latency-seconds 5")]
    Cores {
        /// Time inside the switch over the last N seconds only (1 to 10; default: 10).
        #[arg(long, value_name = "N")]
        latency_seconds: Option<usize>,
    },
}

impl Verb for StatsCmd {
    fn request(&self) -> Result<Request, String> {
        Ok(Request::Stats(match self {
            StatsCmd::Show => StatsRequest::Show,
            StatsCmd::Stats => StatsRequest::Stats,
            StatsCmd::Cores { latency_seconds } => StatsRequest::Cores { latency_seconds: *latency_seconds },
        }))
    }

    fn print(&self, v: serde_json::Value) -> Result<(), serde_json::Error> {
        match self {
            StatsCmd::Show => print_show(&from(v)?),
            StatsCmd::Stats => {
                let s: StatsView = from(v)?;
                print_port_stats(&s.ports);
                println!();
                print_cores(&s.cores);
                println!();
                println!(
                    "mempool: {} mbufs, {} in use, {} free",
                    s.mempool.size, s.mempool.in_use, s.mempool.available
                );
            }
            StatsCmd::Cores { .. } => print_cores(&from::<Vec<CoreView>>(v)?),
        }
        Ok(())
    }
}

pub fn print_show(s: &ShowView) {
    println!("vswitchd {} ({}), main lcore {}, PMD lcores {:?}", s.version, s.dpdk, s.main_lcore, s.pmd_lcores);
    println!("state file: {}", s.db);
    println!("mempool: {} mbufs, {} in use", s.mempool.size, s.mempool.in_use);
    println!();
    print_ports(&s.ports);
    if !s.xconnects.is_empty() {
        println!();
        println!("cross-connects:");
        for x in &s.xconnects {
            println!("  {} <-> {}", x.a, x.b);
        }
    }
    if !s.networks.is_empty() {
        println!();
        print_networks(&s.networks);
    }
    if let Some(v) = &s.vtep {
        println!();
        print_vtep(v);
    }
    if s.learn_events_lost > 0 {
        println!("\nlearn events lost (ring full): {}", s.learn_events_lost);
    }
}

pub fn print_cores(cores: &[CoreView]) {
    let mut rows = vec![header(&[
        "CORE",
        "LCORE",
        "BUSY%",
        "CYC/PKT",
        "PACKETS",
        "BUSY%(ALL)",
        "CYC/PKT(ALL)",
        "ACL MISSES",
        "LAT P50/P99/P99.9 (us)",
        "RX QUEUES",
    ])];
    for c in cores {
        rows.push(vec![
            c.index.to_string(),
            c.lcore.to_string(),
            format!("{:.1}", c.busy_pct),
            format!("{:.1}", c.cycles_per_packet),
            c.packets.to_string(),
            format!("{:.1}", c.busy_pct_total),
            format!("{:.1}", c.cycles_per_packet_total),
            c.acl_misses.to_string(),
            c.latency
                .as_ref()
                .map_or("-".into(), |l| format!("{:.2}/{:.2}/{:.2}", l.p50_ns / 1e3, l.p99_ns / 1e3, l.p999_ns / 1e3)),
            c.rx_queues.join(" "),
        ]);
    }
    table(&rows);
}
