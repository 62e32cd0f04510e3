//! What every broker between nodes shares: the envelope, the bounded queue of publications
//! waiting for the broker, the rooms to subscribe, the reconnection backoff and the counters.
// Without a broker feature only the public types are used.
#![cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]

pub(crate) mod envelope;
#[cfg(any(feature = "redis", feature = "nats"))]
mod node;
mod outbound;
mod stats;
mod subscriptions;

#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) use node::{NodeLink, broker_over_link, shut_down};
pub use outbound::PublishBuffer;
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) use outbound::{Outbound, Queued};
pub use stats::BrokerStats;
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) use stats::{Stat, StatCounters};
#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) use subscriptions::Subscriptions;

use std::time::Duration;

/// Exponential backoff with jitter between reconnection attempts (the NATS client counts its
/// attempts itself: [`jittered`]).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// How long to wait before the next attempt: a random time between half the current
    /// step and the step, which doubles up to the maximum.
    pub(crate) fn delay(&mut self) -> Duration {
        let step = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        jitter(step)
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The wait before attempt `attempt` (from 0): `min` doubled per attempt up to `max`, with
/// jitter.
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
pub(crate) fn jittered(min: Duration, max: Duration, attempt: usize) -> Duration {
    jitter(min.saturating_mul(1 << attempt.min(20) as u32).min(max))
}

/// A random time between half of `step` and `step`, so that nodes that lost the broker at
/// once do not all come back at once.
fn jitter(step: Duration) -> Duration {
    let half = step / 2;
    half + step.saturating_sub(half).mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_maximum_and_starts_over_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..6).map(|_| backoff.delay()).collect();
        for (delay, step) in delays.iter().zip([100, 200, 400, 800, 1000, 1000]) {
            let step = Duration::from_millis(step);
            assert!(
                *delay >= step / 2 && *delay <= step,
                "{delay:?} for {step:?}"
            );
        }
        backoff.reset();
        assert!(backoff.delay() <= Duration::from_millis(100));
    }
}
