//! On hugepages, vswitchd gives its pages back to the host when it exits: after SIGTERM
//! and after SIGKILL alike (DPDK's default keeps the hugepage files, and with them the
//! pages, until the next start with the same file prefix).
use std::{fs, thread::sleep, time::Duration};
use vswitch_tests::*;

const FREE: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

fn free_pages() -> u64 {
    fs::read_to_string(FREE).expect("2 MiB hugepages").trim().parse().unwrap()
}

/// Files the process with `prefix` left in the hugetlbfs mount.
fn files_of(prefix: &str) -> Vec<String> {
    fs::read_dir("/dev/hugepages")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with(prefix)).collect())
        .unwrap_or_default()
}

/// Waits for the free count to come back to `want` (the kernel frees a dead process's
/// mappings as it reaps it).
fn pages_come_back(want: u64) -> u64 {
    for _ in 0..100 {
        if free_pages() >= want {
            break;
        }
        sleep(Duration::from_millis(50));
    }
    free_pages()
}

#[test]
fn hugepages_go_back_to_the_host_after_sigterm_and_after_sigkill() {
    require_root();
    let before = free_pages();
    assert!(before >= 64, "this test needs 64 free 2 MiB hugepages (scripts/test.sh reserves them); {before} are free");
    let mut d = Daemon::start_with(DaemonOpts { hugepages: true, ..Default::default() });
    let used = before - free_pages();
    assert!(used > 0, "vswitchd runs on hugepages: none were taken\n{}", d.log_tail());
    assert_eq!(files_of(&d.prefix), Vec::<String>::new(), "hugepage files are unlinked once mapped");

    d.kill9();
    assert_eq!(pages_come_back(before), before, "all {used} pages come back after SIGKILL");
    d.start_again();
    assert!(free_pages() < before, "running again on hugepages");
    assert!(d.stop().success());
    assert_eq!(pages_come_back(before), before, "all pages come back after SIGTERM");
    assert_eq!(files_of(&d.prefix), Vec::<String>::new());
}
