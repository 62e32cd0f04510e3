//! Deadlines from settings: a `Duration::MAX` timeout means "never", not an overflow panic.

use std::time::Duration;

use tokio::time::Instant;

/// A year: "never", for timers that must exist.
pub(crate) const FAR: Duration = Duration::from_secs(86_400 * 365);

/// `after` from now, capped at [`FAR`].
pub(crate) fn after(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after.min(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_are_far_not_a_panic() {
        let far = after(Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(86_000 * 365));
        assert!(after(Duration::ZERO) <= Instant::now());
    }
}
