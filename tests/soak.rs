//! Fault-injection soak (bounded, ~14 s): redis-server is killed and restarted
//! twice under 64 tasks of `#[cached]` calls and writes.

#[path = "support/soak.rs"]
mod soak;
mod support;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_twice_under_load() {
    let mut report = soak::run(Duration::from_secs(2)).await;
    assert!(report.calls > 1_000, "the load ran: {} calls", report.calls);
    assert!(
        report.calls_in_outage > 100,
        "calls during outages: {}",
        report.calls_in_outage
    );
    assert_eq!(report.caller_errors, 0, "no cache error reached a caller");
    assert!(
        report.l1_reads_in_outage > 100,
        "L1 served during the outages: {}",
        report.l1_reads_in_outage
    );
    assert!(
        report.body_runs_in_outage * 4 < report.calls_in_outage,
        "memoized answers served during outages: {} body runs for {} calls",
        report.body_runs_in_outage,
        report.calls_in_outage
    );
    assert_eq!(
        report.final_writes_visible, report.final_writes,
        "every write after recovery is in Redis"
    );
    assert!(report.recovery_secs < 5.0, "recovered in {:.2} s", report.recovery_secs);
    let p99 = soak::quantile(&mut report.latencies_outage_us, 0.99);
    assert!(
        p99 < 2_000_000,
        "no call waited out a hang during the outage: p99 {p99} us"
    );
}
