//! This instance's side of cross-instance L1 coherence: the invalidation
//! `PUBLISH` added to write pipelines, and what a received invalidation (or a
//! lost and regained subscription) does to L1. The message format and the
//! subscription loop are in `invalidation.rs`.

use super::{invalidation, Inner};
use std::sync::atomic::Ordering::Relaxed;

impl Inner {
    pub(super) fn publish(&self, pipe: &mut redis::Pipeline, full_key: &str) {
        if self.settings.coherence {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(invalidation::key_message(&self.instance_id, full_key))
                .ignore();
        }
    }

    pub(super) fn coherence_live(&self, live: bool) {
        self.coherent.store(live, Relaxed);
        // Only a subscription that was live can be lost: before the first
        // one, L1 holds nothing filled under a subscription.
        if live {
            self.in_gap.store(false, Relaxed);
        }
    }

    /// The subscription dropped: until it is back, L1 does not answer ahead
    /// of Redis (see `tiers.rs`).
    pub(super) fn subscription_lost(&self) {
        self.in_gap.store(true, Relaxed);
    }

    /// The subscription came back: invalidations may have been missed, so
    /// every entry filled before the gap goes (while the subscription was
    /// down, L1 did not answer ahead of Redis; see `tiers.rs`).
    pub(super) fn on_resubscribed(&self) {
        if self.breaker.is_closed() {
            self.l1.clear();
            self.metrics.l1_clears.bump();
        }
    }

    pub(super) fn on_invalidation(&self, payload: &str) {
        match invalidation::parse(payload, &self.instance_id) {
            Some(invalidation::Message::Key(full_key)) => {
                self.metrics.invalidations_received.bump();
                let prefix = self.prefix.get();
                if let Some(key) = full_key.strip_prefix(prefix.as_str()) {
                    self.l1.invalidate(key);
                }
            }
            Some(invalidation::Message::Purge(_)) => {
                self.metrics.invalidations_received.bump();
                self.l1.clear();
                self.metrics.l1_clears.bump();
            }
            None => {}
        }
    }
}
