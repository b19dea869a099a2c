//! Measurement helpers shared by the bench binaries.
#![allow(dead_code)] // each bench uses a subset

use std::future::Future;
use std::time::Instant;

/// Runs `tasks` tokio tasks doing `ops_per_task` calls of `op` each and returns
/// calls per second. `op` receives the call's global index (0..tasks*ops_per_task).
pub async fn ops_per_sec<F, Fut>(tasks: usize, ops_per_task: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in 0..ops_per_task {
                    op(t * ops_per_task + i).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("bench task");
    }
    (tasks * ops_per_task) as f64 / started.elapsed().as_secs_f64()
}

/// The median of `xs` (the upper one for an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}
