//! The wall clock in the unit the chain uses.

/// Seconds since the Unix epoch by the local clock (0 if the clock is before 1970). Chain
/// time comes from blocks; this is for what the local machine decides (challenge expiry,
/// the earliest time the next block can carry).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
