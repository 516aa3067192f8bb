//! Accounts and access: users, groups, roles, and the bearer tokens they sign in with.

mod groups;
mod password;
mod tokens;
mod users;

pub use groups::*;
pub use password::{hash_password, verify_password, Password};
pub use tokens::*;
pub use users::*;

use crate::error::ValidationError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What a person may do. Roles are capabilities, not ranks: `admin` alone implies all others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads the CMDB, changes, incidents and reports.
    Viewer,
    /// Raises change requests.
    Requester,
    /// Votes on changes in the approval groups they belong to.
    Approver,
    /// Runs the change process: schedules, overrides conflicts, reads the audit log.
    ChangeManager,
    /// Runs the fleet: maintains the CMDB, handles incidents.
    Operator,
    /// Manages accounts and everything else.
    Admin,
    /// A host agent: writes its host's metrics.
    Agent,
}

impl Role {
    pub const ALL: [Role; 7] =
        [Role::Viewer, Role::Requester, Role::Approver, Role::ChangeManager, Role::Operator, Role::Admin, Role::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::ChangeManager => "change-manager",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of roles, stored as a comma-separated list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RoleSet(BTreeSet<Role>);

impl RoleSet {
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Self {
        RoleSet(roles.into_iter().collect())
    }

    /// True when the set holds any of `allowed`, or `admin`.
    pub fn permits(&self, allowed: &[Role]) -> bool {
        self.0.contains(&Role::Admin) || allowed.iter().any(|r| self.0.contains(r))
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    pub fn extend(&mut self, other: &RoleSet) {
        self.0.extend(other.0.iter().copied());
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    pub(crate) fn to_column(&self) -> String {
        self.0.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Reads the stored form; names this version does not know are skipped rather than failing a read.
    pub(crate) fn from_column(s: &str) -> Self {
        RoleSet(s.split(',').filter_map(Role::parse).collect())
    }
}

/// A login name: 1–64 characters of `a-z 0-9 . _ -`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let ok_chars =
            value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        let ok_start = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        if value.is_empty() || value.len() > 64 || !ok_chars || !ok_start {
            return Err(ValidationError::new(
                "username",
                "must be 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
            ));
        }
        Ok(Username(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, checked for shape only: delivery is the proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let shape_ok = match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
            }
            None => false,
        };
        if !shape_ok || value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::new("email", "must be an address like name@example.org"));
        }
        Ok(Email(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The signed-in user behind a request, with the roles they hold directly and through groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub roles: RoleSet,
    /// The token the request came with, so a user can revoke the one they are using.
    pub token_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_is_permitted_everything_and_others_only_their_roles() {
        let admin = RoleSet::new([Role::Admin]);
        let viewer = RoleSet::new([Role::Viewer]);
        assert!(admin.permits(&[Role::Operator]));
        assert!(viewer.permits(&[Role::Viewer, Role::Operator]));
        assert!(!viewer.permits(&[Role::Operator]));
        assert!(!RoleSet::default().permits(&[Role::Viewer]));
    }

    #[test]
    fn roles_round_trip_through_their_column() {
        let set = RoleSet::new([Role::Operator, Role::ChangeManager]);
        assert_eq!(set.to_column(), "change-manager,operator");
        assert_eq!(RoleSet::from_column(&set.to_column()), set);
    }

    #[test]
    fn usernames_and_emails_are_checked() {
        assert!(Username::parse("alice.b-2").is_ok());
        assert!(Username::parse("Alice").is_err());
        assert!(Username::parse("-x").is_err());
        assert!(Email::parse("a@example.org").is_ok());
        assert!(Email::parse("a@b").is_err());
        assert!(Email::parse("a b@example.org").is_err());
    }
}
