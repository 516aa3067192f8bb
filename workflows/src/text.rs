//! Bounded text and paging values shared by every resource.

use crate::error::ValidationError;
use serde::Serialize;

/// A short display name: 1–128 characters, no control characters, no surrounding blanks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        let count = value.chars().count();
        if count == 0 {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if count > Self::MAX_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} characters, got {count}", Self::MAX_CHARS),
            ));
        }
        if value.trim() != value {
            return Err(ValidationError::new(field, "must not start or end with white space"));
        }
        if value.chars().any(char::is_control) {
            return Err(ValidationError::new(field, "must not contain control characters"));
        }
        Ok(Name(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text of at most 4096 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 4096;

    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        let count = value.chars().count();
        if count > Self::MAX_CHARS {
            return Err(ValidationError::new(
                field,
                format!("must be at most {} characters, got {count}", Self::MAX_CHARS),
            ));
        }
        if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(ValidationError::new(field, "must not contain control characters"));
        }
        Ok(Description(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which slice of a list to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub offset: u64,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 500;
    /// Beyond this an offset is certainly a mistake, and it keeps values inside SQL's signed range.
    pub const MAX_OFFSET: u64 = 1_000_000_000;

    pub fn new(limit: Option<u32>, offset: Option<u64>) -> Result<Self, ValidationError> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(ValidationError::new("limit", format!("must be between 1 and {}", Self::MAX_LIMIT)));
        }
        let offset = offset.unwrap_or(0);
        if offset > Self::MAX_OFFSET {
            return Err(ValidationError::new("offset", format!("must be at most {}", Self::MAX_OFFSET)));
        }
        Ok(PageRequest { limit, offset })
    }

    pub(crate) fn limit_i64(&self) -> i64 {
        i64::from(self.limit)
    }

    pub(crate) fn offset_i64(&self) -> i64 {
        i64::try_from(self.offset).unwrap_or(i64::MAX)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest { limit: Self::DEFAULT_LIMIT, offset: 0 }
    }
}

impl<T> Page<T> {
    /// The same page with each item converted.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            total: self.total,
            limit: self.limit,
            offset: self.offset,
        }
    }

    /// The same page with each item converted, failing on the first that cannot be.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        let items = self.items.into_iter().map(f).collect::<Result<Vec<_>, E>>()?;
        Ok(Page { items, total: self.total, limit: self.limit, offset: self.offset })
    }
}

/// One page of a list, with the total count matching the filters.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: u32,
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reject_blank_long_and_control_text() {
        assert!(Name::parse("name", "").is_err());
        assert!(Name::parse("name", " x").is_err());
        assert!(Name::parse("name", "a\u{0}b").is_err());
        assert!(Name::parse("name", &"x".repeat(129)).is_err());
        assert_eq!(Name::parse("name", "web-01").map(|n| n.as_str().to_owned()), Ok("web-01".into()));
    }

    #[test]
    fn page_limits_are_bounded() {
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(501), None).is_err());
        assert_eq!(PageRequest::new(None, None), Ok(PageRequest::default()));
    }
}
