//! Per-project quotas on groups and rules (SEMANTICS.md §1.8). A negative limit is unlimited.

use std::fmt;

pub const GROUPS: &str = "security_group_count";
pub const RULES: &str = "security_group_rule_count";

/// The largest limit accepted (Neutron refuses 2147483648).
pub const MAX_LIMIT: i64 = i32::MAX as i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub security_groups: i64,
    pub security_group_rules: i64,
}

impl Default for Limits {
    /// Generous defaults for a self-hosted service; operators lower them per project.
    fn default() -> Self {
        Limits { security_groups: 10_000, security_group_rules: 1_000_000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub security_groups: u64,
    pub security_group_rules: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub quota: &'static str,
    pub limit: i64,
    pub requested: u64,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quota exceeded: {} would be {} but the limit is {}", self.quota, self.requested, self.limit)
    }
}

fn within(limit: i64, usage: u64) -> bool {
    limit < 0 || usage <= limit as u64
}

impl Limits {
    /// Usage after a change is acceptable if it is within the limits, or if the dimension did
    /// not grow (a lowered limit never blocks deleting or keeping what exists).
    pub fn check(&self, before: Usage, after: Usage) -> Result<(), QuotaExceeded> {
        if after.security_groups > before.security_groups && !within(self.security_groups, after.security_groups) {
            return Err(QuotaExceeded { quota: GROUPS, limit: self.security_groups, requested: after.security_groups });
        }
        if after.security_group_rules > before.security_group_rules && !within(self.security_group_rules, after.security_group_rules) {
            return Err(QuotaExceeded { quota: RULES, limit: self.security_group_rules, requested: after.security_group_rules });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_growth_beyond_the_limit_fails() {
        let limits = Limits { security_groups: 2, security_group_rules: 0 };
        let usage = |g, r| Usage { security_groups: g, security_group_rules: r };
        assert!(limits.check(usage(1, 0), usage(2, 0)).is_ok());
        assert_eq!(limits.check(usage(2, 0), usage(3, 0)).unwrap_err().quota, GROUPS);
        assert_eq!(limits.check(usage(0, 0), usage(1, 2)).unwrap_err().quota, RULES);
        assert!(limits.check(usage(5, 5), usage(4, 5)).is_ok());
        assert!(Limits { security_groups: -1, security_group_rules: -1 }.check(usage(0, 0), usage(9, 9)).is_ok());
    }
}
