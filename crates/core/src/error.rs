//! Errors of the domain. Two families, because the contract answers them differently:
//! schema errors are always a synchronous 400 with `invalid_fields`; semantic rule errors are a
//! synchronous 400/404/409 on v1 paths and a task in ERROR on v2 paths.

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

/// Schema violations, keyed by the dotted path of the offending field (`rules.0.protocol`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(pub BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, reason);
        errors
    }

    pub fn add(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(reason.into());
    }

    pub fn merge(&mut self, other: FieldErrors) {
        for (field, reasons) in other.0 {
            self.0.entry(field).or_default().extend(reasons);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, the errors otherwise.
    pub fn into_result<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Validation Error: {{")?;
        for (i, (field, reasons)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "'{field}': [")?;
            for (j, reason) in reasons.iter().enumerate() {
                if j > 0 {
                    write!(f, ", ")?;
                }
                write!(f, "'{reason}'")?;
            }
            write!(f, "]")?;
        }
        write!(f, "}}")
    }
}

/// A rule that is well-formed but not acceptable, as Neutron would refuse it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// 400: the combination of fields is invalid (`field` names the one to change).
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// 404: `remote_group_id` names no group of this project and region.
    #[error("Security group {id} could not be found (remote_group_id)")]
    RemoteGroupNotFound { field: String, id: Uuid },
    /// 409: the group already holds a rule with the same identity.
    #[error("Security group rule already exists. Rule id is {existing}")]
    Duplicate { field: String, existing: Uuid },
}

impl RuleError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RuleError::Invalid { field: field.into(), message: message.into() }
    }

    pub fn field(&self) -> &str {
        match self {
            RuleError::Invalid { field, .. } | RuleError::RemoteGroupNotFound { field, .. } | RuleError::Duplicate { field, .. } => field,
        }
    }

    /// The same error, reported under a path prefix such as `rules.3`.
    pub fn within(self, prefix: &str) -> Self {
        let prefixed = |field: String| if prefix.is_empty() { field } else { format!("{prefix}.{field}") };
        match self {
            RuleError::Invalid { field, message } => RuleError::Invalid { field: prefixed(field), message },
            RuleError::RemoteGroupNotFound { field, id } => RuleError::RemoteGroupNotFound { field: prefixed(field), id },
            RuleError::Duplicate { field, existing } => RuleError::Duplicate { field: prefixed(field), existing },
        }
    }
}
