//! The mark an HTTP request carries until it is authenticated.
//!
//! The HTTP server admits only so many unauthenticated requests from one source address at
//! once (`signalbox_edge::http`). It puts a [`PendingAuth`] in each request's extensions;
//! whichever code checks the request's credential calls [`PendingAuth::authenticated`], which
//! gives the slot back at once, so that a request that waits legitimately (a long poll, a
//! publish waiting on a slow body) is no longer counted against its source.

use std::fmt;
use std::sync::{Arc, Mutex};

type Release = Box<dyn FnOnce() + Send>;

/// Cloneable; the release runs once, at the first of [`authenticated`](Self::authenticated)
/// or the end of the request.
#[derive(Clone)]
pub struct PendingAuth {
    /// Shared by the request's clones; a `Mutex` (not an atomic) because the release is a
    /// closure taken out once. Never contended: one request, one task.
    release: Arc<Mutex<Option<Release>>>,
}

impl PendingAuth {
    pub fn new(release: impl FnOnce() + Send + 'static) -> Self {
        Self { release: Arc::new(Mutex::new(Some(Box::new(release)))) }
    }

    /// The request's credential checked out: it no longer counts as unauthenticated.
    pub fn authenticated(&self) {
        let release = self.release.lock().map_or(None, |mut slot| slot.take());
        if let Some(release) = release {
            release();
        }
    }
}

impl fmt::Debug for PendingAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuth").finish_non_exhaustive()
    }
}
