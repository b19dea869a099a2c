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

/// One side of a paired comparison: a named async operation.
pub type Op = std::sync::Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Wraps a closure returning a future as an [`Op`].
pub fn op<F, Fut>(f: F) -> Op
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    std::sync::Arc::new(move || Box::pin(f()))
}

/// Ops/s of every side in every round of [`paired`].
pub struct Paired {
    /// `rounds[r][side]`.
    pub rounds: Vec<Vec<f64>>,
}

impl Paired {
    /// The median ops/s of `side`.
    pub fn median(&self, side: usize) -> f64 {
        median(self.rounds.iter().map(|r| r[side]).collect())
    }

    /// The median over rounds of `side`'s ops/s over `peer`'s in the same round.
    pub fn ratio(&self, side: usize, peer: usize) -> f64 {
        let ratio = median(self.rounds.iter().map(|r| r[side] / r[peer]).collect());
        (ratio * 1000.0).round() / 1000.0
    }
}

/// Paired rounds: each round runs every side once (`tasks` x `ops_per_task`
/// calls), in rotating order, after one warm-up round; ratios are then taken
/// within rounds, so load from other processes cancels.
pub async fn paired(rounds: usize, tasks: usize, ops_per_task: usize, sides: &[Op]) -> Paired {
    for side in sides {
        let side = side.clone();
        ops_per_sec(tasks, ops_per_task, move |_| side()).await;
    }
    let mut out = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let mut this = vec![0.0; sides.len()];
        for k in 0..sides.len() {
            let index = (round + k) % sides.len();
            let side = sides[index].clone();
            this[index] = ops_per_sec(tasks, ops_per_task, move |_| side()).await;
        }
        out.push(this);
    }
    Paired { rounds: out }
}

/// A compressible value of exactly `len` bytes: JSON records with varied
/// numbers and words, as cached API responses look.
pub fn json_value(len: usize) -> Vec<u8> {
    let words = [
        "alpha", "beta", "gamma", "delta", "user", "email", "active", "score", "created", "updated",
    ];
    let mut text = String::from("[");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    while text.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = |shift: u64| words[((state >> shift) % 10) as usize];
        text.push_str(&format!(
            "{{\"id\":{},\"name\":\"{} {}\",\"score\":{},\"tags\":[\"{}\"]}},",
            state % 100_000,
            word(0),
            state % 977,
            state % 101,
            word(8)
        ));
    }
    text.truncate(len);
    text.into_bytes()
}
