//! Latency of `#[cached]` calls over a `GenericRedisCache` while redis-server
//! is killed and restarted twice (64 tasks): p50 / p99 with Redis up and during
//! the outages, and the recovery time. Prints one JSON object.
//!
//! Run: `cargo bench --bench soak`.

#[path = "../tests/support/soak.rs"]
mod soak;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut report = rt.block_on(soak::run(Duration::from_secs(3)));
    let up_p50 = soak::quantile(&mut report.latencies_up_us, 0.50);
    let up_p99 = soak::quantile(&mut report.latencies_up_us, 0.99);
    let down_p50 = soak::quantile(&mut report.latencies_outage_us, 0.50);
    let down_p99 = soak::quantile(&mut report.latencies_outage_us, 0.99);
    println!(
        "{}",
        serde_json::json!({
            "bench": "soak_kill_restart_twice_64_tasks",
            "calls": report.calls,
            "calls_during_outage": report.calls_in_outage,
            "caller_errors": report.caller_errors,
            "body_runs": report.body_runs,
            "body_runs_during_outage": report.body_runs_in_outage,
            "redis_up_p50_us": up_p50,
            "redis_up_p99_us": up_p99,
            "outage_p50_us": down_p50,
            "outage_p99_us": down_p99,
            "outage_p99_over_up_p99": (down_p99 as f64 / up_p99.max(1) as f64 * 100.0).round() / 100.0,
            "recovery_secs": (report.recovery_secs * 1000.0).round() / 1000.0,
            "writes_after_recovery_visible": format!("{}/{}", report.final_writes_visible, report.final_writes),
        })
    );
}
