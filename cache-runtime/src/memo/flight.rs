//! Single-flight: one body execution per cold key, however many callers.
//!
//! The first caller of a key becomes the leader and runs the body; later
//! callers wait for its outcome. Never more than one body runs at a time per
//! key, whatever the body returns:
//!
//! - a cacheable value is handed to every waiter ([`Outcome::Value`]);
//! - any other result (an error, a value `unless` keeps out of the cache) is
//!   handed to every waiter as a clone when the return type is `Clone`
//!   ([`Outcome::Result`]): the body ran once for the whole flight;
//! - otherwise, and when the leader's future is dropped (a timeout, a
//!   cancelled request), the flight is abandoned and the waiters take over one
//!   at a time: one becomes the next leader, the others wait for it.
//!
//! Flights are per key, so a recursive function that calls itself with other
//! arguments never waits on itself, and no lock is held while a body runs.
//! The same flights coalesce in-process callers of
//! [`DistributedLoader`](crate::DistributedLoader).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a flight ended.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The leader produced a cacheable value.
    Value(Arc<dyn Any + Send + Sync>),
    /// The leader's result was not cacheable (an error, say) but can be
    /// cloned: a copy of the whole return value, for each waiter.
    Result(Arc<dyn Any + Send + Sync>),
    /// The leader went away, or its result can be neither cached nor cloned:
    /// the waiters take over one at a time.
    Abandoned,
}

struct Flight {
    outcome: Mutex<Option<Outcome>>,
    done: tokio::sync::Notify,
}

/// The flights of one memoized function.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Arc<Flight>>>,
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights").finish_non_exhaustive()
    }
}

/// Role of a caller for one key.
pub(crate) enum Role<'a> {
    Leader(Leader<'a>),
    Waiter(Waiter),
}

/// Held by the caller that runs the body. Dropping it without
/// [`Leader::finish`] abandons the flight.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    flight: Arc<Flight>,
    finished: bool,
}

/// Waits for a leader.
pub(crate) struct Waiter {
    flight: Arc<Flight>,
}

impl Flights {
    /// Joins the flight for `key`, or starts it.
    pub(crate) fn join(&self, key: &str) -> Role<'_> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = map.get(key) {
            return Role::Waiter(Waiter { flight: flight.clone() });
        }
        let flight = Arc::new(Flight {
            outcome: Mutex::new(None),
            done: tokio::sync::Notify::new(),
        });
        map.insert(key.to_owned(), flight.clone());
        Role::Leader(Leader {
            flights: self,
            key: key.to_owned(),
            flight,
            finished: false,
        })
    }

    /// Starts a flight only if none runs for `key` (early refresh).
    pub(crate) fn try_lead(&self, key: &str) -> Option<Leader<'_>> {
        match self.join(key) {
            Role::Leader(leader) => Some(leader),
            Role::Waiter(_) => None,
        }
    }
}

impl Leader<'_> {
    /// Publishes the outcome and wakes every waiter.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.publish(outcome);
    }

    fn publish(&self, outcome: Outcome) {
        let mut map = self.flights.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            map.remove(&self.key);
        }
        drop(map);
        *self.flight.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        self.flight.done.notify_waiters();
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.publish(Outcome::Abandoned);
        }
    }
}

impl Waiter {
    /// Waits for the leader's outcome. Works on any executor, including the
    /// thread-parking one of synchronous memoized functions.
    pub(crate) async fn wait(self) -> Outcome {
        loop {
            let notified = self.flight.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.flight.outcome.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return outcome;
            }
            notified.await;
        }
    }
}
