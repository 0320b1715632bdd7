//! PMD lcores: they exist, the kernel leaves them alone, and they do not share a
//! physical core with the control plane.
use crate::doctor::{
    host::{cpu_list, Host},
    plan::Plan,
    Finding, Severity,
};

pub fn check(plan: &Plan, host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    let online = host.online_cpus();
    let all: Vec<u32> = std::iter::once(plan.main_lcore).chain(plan.pmd_lcores.iter().copied()).collect();
    let missing: Vec<u32> = all.iter().copied().filter(|c| !online.is_empty() && !online.contains(c)).collect();
    if !missing.is_empty() {
        out.push(
            Finding::bad(
                "lcores",
                Severity::Error,
                format!("lcores {} are not online CPUs of this host ({})", list(&missing), list(&online)),
                "EAL refuses to start on CPUs that do not exist",
            )
            .fix(format!("pick EAL -l from {}", list(&online))),
        );
    } else if plan.pmd_lcores.is_empty() {
        out.push(
            Finding::bad(
                "lcores",
                Severity::Error,
                "no PMD lcore: EAL is given one CPU",
                "the main lcore runs the control plane; packets need at least one more",
            )
            .fix("EAL -l with two CPUs or more, e.g. -l 0-1"),
        );
    } else {
        out.push(Finding::ok("lcores", format!("control on {}, PMD on {}", plan.main_lcore, list(&plan.pmd_lcores))));
    }

    let (isolated, nohz) = (host.isolated(), host.nohz_full());
    let rcu = host.cmdline("rcu_nocbs").map(|l| cpu_list(&l)).unwrap_or_default();
    let lacking = |set: &[u32]| -> Vec<u32> { plan.pmd_lcores.iter().copied().filter(|c| !set.contains(c)).collect() };
    let gaps: Vec<String> =
        [("isolcpus", lacking(&isolated)), ("nohz_full", lacking(&nohz)), ("rcu_nocbs", lacking(&rcu))]
            .into_iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(name, l)| format!("{name} lacks {}", list(&l)))
            .collect();
    if gaps.is_empty() && !plan.pmd_lcores.is_empty() {
        out.push(Finding::ok(
            "isolation",
            format!("PMD lcores {} are isolated, tickless and free of RCU callbacks", list(&plan.pmd_lcores)),
        ));
    } else if !gaps.is_empty() {
        let pmd = list(&plan.pmd_lcores);
        out.push(
            Finding::bad(
                "isolation",
                Severity::Warn,
                format!("PMD lcores are not isolated: {}", gaps.join(", ")),
                "the kernel runs other tasks, timer ticks and RCU callbacks on a polling core: latency spikes and rx_missed under load",
            )
            .fix(format!(
                "add \"isolcpus={pmd} nohz_full={pmd} rcu_nocbs={pmd}\" to GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub and reboot"
            )),
        );
    }

    for &p in &plan.pmd_lcores {
        let siblings = host.siblings(p);
        if siblings.contains(&plan.main_lcore) && p != plan.main_lcore {
            out.push(
                Finding::bad(
                    "hyperthreads",
                    Severity::Warn,
                    format!("PMD lcore {p} shares a physical core with the control lcore {}", plan.main_lcore),
                    "the control plane's bursts (table compiles, journal writes) take the polling core's execution units",
                )
                .fix(format!("EAL -l with a main lcore outside {}", list(&siblings))),
            );
        }
        if let Some(&q) = plan.pmd_lcores.iter().find(|&&q| q > p && siblings.contains(&q)) {
            out.push(Finding::bad(
                "hyperthreads",
                Severity::Info,
                format!("PMD lcores {p} and {q} are hyperthreads of one core"),
                "two polling threads on one core each get about 60% of it",
            ));
        }
    }
    out
}

pub(crate) fn list(cpus: &[u32]) -> String {
    if cpus.is_empty() {
        return "none".into();
    }
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j > i { format!("{}-{}", cpus[i], cpus[j]) } else { cpus[i].to_string() });
        i = j + 1;
    }
    out.join(",")
}
