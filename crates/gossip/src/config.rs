//! Knobs, with safe defaults, and the `lan`/`wan` profiles.

use std::time::Duration;

/// Default UDP port (memberlist's, as MetalLB's `--ml-bindport`).
pub const DEFAULT_PORT: u16 = 7946;
/// Default MTU for a sealed datagram (MetalLB's `UDPBufferSize`).
pub const DEFAULT_MTU_BYTES: usize = 1400;

/// A named set of timings, as MetalLB's `--ml-wan-config`; selected by `--gossip-profile lan|wan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// One data centre: fast probes, a dead node is detected in a few hundred milliseconds.
    Lan,
    /// Slow or lossy links: ten times slower probes and longer suspicion.
    Wan,
}

impl std::str::FromStr for Profile {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value {
            "lan" => Ok(Self::Lan),
            "wan" => Ok(Self::Wan),
            other => Err(ConfigError::UnknownProfile {
                profile: other.to_string(),
            }),
        }
    }
}

/// Membership configuration.
///
/// Detection time of a dead member is about: time until some member probes it (at most
/// `members - 1` probe periods, since each member probes everyone in turn) + one `probe_period` +
/// the suspicion timeout (`suspicion_multiplier × probe_period × max(1, log10(members))`) + a
/// few milliseconds of gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bound into every datagram's AAD: clusters with different names never talk.
    pub cluster_name: String,
    /// How often each member probes the next member (round robin over a shuffled list).
    pub probe_period: Duration,
    /// How long to wait for a direct ack before asking others to probe indirectly. Must be less
    /// than `probe_period`.
    pub probe_timeout: Duration,
    /// How many members are asked to probe indirectly (and how many get each gossip).
    pub indirect_probes: usize,
    /// Suspicion lasts `suspicion_multiplier × probe_period × max(1, log10(members))` before Down.
    pub suspicion_multiplier: u32,
    /// Each update is piggybacked `retransmit_multiplier × ceil(log10(members + 1))` times.
    pub retransmit_multiplier: u32,
    /// Pending updates are also pushed to `indirect_probes` random members this often.
    pub gossip_interval: Duration,
    /// Anti-entropy: every interval one random member receives a page of everyone's state.
    pub sync_interval: Duration,
    /// Seeds that are not alive members are re-announced to this often (a partitioned node comes
    /// back), and down members are contacted this often.
    pub rejoin_interval: Duration,
    /// A down member is forgotten after this long (then its address may rejoin with any identity).
    pub forget_down_after: Duration,
    /// Largest sealed datagram, in bytes.
    pub mtu_bytes: usize,
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `--gossip-profile` is neither `lan` nor `wan`.
    #[error("gossip profile {profile:?} is neither lan nor wan")]
    UnknownProfile {
        /// The rejected value.
        profile: String,
    },
    /// A field is out of range.
    #[error("gossip config field {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl Config {
    /// The `lan` profile (the default).
    pub fn lan(cluster_name: impl Into<String>) -> Self {
        Self {
            cluster_name: cluster_name.into(),
            probe_period: Duration::from_millis(40),
            probe_timeout: Duration::from_millis(12),
            indirect_probes: 3,
            suspicion_multiplier: 3,
            retransmit_multiplier: 4,
            gossip_interval: Duration::from_millis(40),
            sync_interval: Duration::from_secs(2),
            rejoin_interval: Duration::from_secs(2),
            forget_down_after: Duration::from_secs(300),
            mtu_bytes: DEFAULT_MTU_BYTES,
        }
    }

    /// The `wan` profile.
    pub fn wan(cluster_name: impl Into<String>) -> Self {
        Self {
            probe_period: Duration::from_millis(500),
            probe_timeout: Duration::from_millis(200),
            indirect_probes: 4,
            suspicion_multiplier: 4,
            retransmit_multiplier: 5,
            gossip_interval: Duration::from_millis(200),
            sync_interval: Duration::from_secs(10),
            rejoin_interval: Duration::from_secs(10),
            ..Self::lan(cluster_name)
        }
    }

    /// The configuration of `profile`.
    pub fn for_profile(profile: Profile, cluster_name: impl Into<String>) -> Self {
        match profile {
            Profile::Lan => Self::lan(cluster_name),
            Profile::Wan => Self::wan(cluster_name),
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason| Err(ConfigError::Invalid { field, reason });
        if self.cluster_name.is_empty() {
            return invalid("cluster_name", "must not be empty");
        }
        if self.probe_timeout.is_zero() || self.probe_timeout >= self.probe_period {
            return invalid("probe_timeout", "must be above zero and below probe_period");
        }
        if !(1..=16).contains(&self.indirect_probes) {
            return invalid("indirect_probes", "must be 1 to 16");
        }
        if self.suspicion_multiplier == 0 {
            return invalid("suspicion_multiplier", "must be at least 1");
        }
        if !(1..=20).contains(&self.retransmit_multiplier) {
            return invalid("retransmit_multiplier", "must be 1 to 20");
        }
        for (field, value) in [
            ("gossip_interval", self.gossip_interval),
            ("sync_interval", self.sync_interval),
            ("rejoin_interval", self.rejoin_interval),
            ("forget_down_after", self.forget_down_after),
        ] {
            if value.is_zero() {
                return invalid(field, "must be above zero");
            }
        }
        if !(256..=65_000).contains(&self.mtu_bytes) {
            return invalid("mtu_bytes", "must be 256 to 65000");
        }
        Ok(())
    }

    /// The suspicion timeout for a cluster of `members` (including us).
    pub fn suspicion_timeout(&self, members: usize) -> Duration {
        let scale = (members.max(1) as f64).log10().max(1.0);
        self.probe_period
            .mul_f64(f64::from(self.suspicion_multiplier) * scale)
    }

    /// How often each update is piggybacked in a cluster of `members`.
    pub fn retransmissions(&self, members: usize) -> u8 {
        let scale = ((members + 1) as f64).log10().ceil().max(1.0);
        (f64::from(self.retransmit_multiplier) * scale).clamp(1.0, 255.0) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_valid() {
        Config::lan("c").validate().unwrap();
        Config::wan("c").validate().unwrap();
        assert_eq!("wan".parse::<Profile>().unwrap(), Profile::Wan);
        assert!("metro".parse::<Profile>().is_err());
    }

    #[test]
    fn suspicion_grows_with_log_members() {
        let config = Config::lan("c");
        assert_eq!(config.suspicion_timeout(5), Duration::from_millis(120));
        assert!(config.suspicion_timeout(100) > config.suspicion_timeout(20));
        assert_eq!(config.suspicion_timeout(100), Duration::from_millis(240));
        assert_eq!(config.retransmissions(5), 4);
        assert_eq!(config.retransmissions(1000), 16);
    }

    #[test]
    fn bad_values_name_the_field() {
        let mut config = Config::lan("c");
        config.probe_timeout = config.probe_period;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                field: "probe_timeout",
                ..
            })
        ));
    }
}
