//! Cursor pagination: lists are ordered by `(created_at, id)` and a cursor is the position of
//! the last item returned, so pages stay stable while rows are added.

/// Where the next page starts: after this `(created_at, id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub id: String,
}

/// A page request. `limit` is clamped to 1..=[`PageRequest::MAX_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Cursor>,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 200;
    pub const DEFAULT_LIMIT: u32 = 50;

    pub fn first(limit: u32) -> Self {
        Self { limit, after: None }
    }

    pub(crate) fn clamped_limit(&self) -> i64 {
        i64::from(self.limit.clamp(1, Self::MAX_LIMIT))
    }

    /// `(created_at, id)` bounds for `created_at > $a OR (created_at = $b AND id > $c)`.
    pub(crate) fn bounds(&self) -> (i64, i64, String) {
        match &self.after {
            Some(c) => (c.created_at, c.created_at, c.id.clone()),
            None => (i64::MIN, i64::MIN, String::new()),
        }
    }
}

/// One page of results and the cursor of the next one, if there is more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows: the extra row only says there is more.
    pub(crate) fn from_rows(mut rows: Vec<T>, request: &PageRequest, position: impl Fn(&T) -> Cursor) -> Self {
        let limit = usize::try_from(request.clamped_limit()).unwrap_or(usize::MAX);
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(position)
        } else {
            None
        };
        Self { items: rows, next }
    }
}
