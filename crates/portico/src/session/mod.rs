//! Server-side sessions: `session.insert("k", v)` in one request, `session.get("k")` in the next,
//! on any server that shares the store.
//!
//! A view takes a [`Session`] argument. The [`SessionLayer`] puts one in every request without
//! doing any I/O: the session is read from the store the first time a view touches it, once per
//! request, and the values are cached for the rest of the request. On the way out the layer writes
//! only what changed, key by key ([`SessionStore::update`]), so concurrent requests of one session
//! that write different keys never lose each other's writes, even across servers.
//!
//! Rules the layer enforces, whatever the store:
//! - ids are 256 random bits from the OS CSPRNG; an id the store does not know (forged, expired,
//!   deleted) is never adopted: the request gets a fresh, empty session and a new id on write;
//! - a request that never touches the session, or only reads it, sets no cookie (but a read
//!   refreshes the idle expiry now and then, so an active user stays logged in);
//! - an idle timeout (default 2 weeks) and an absolute timeout (default 30 days), both checked on
//!   the server, not only by cookie expiry; a session not marked as a user's
//!   ([`Session::mark_authenticated`], called at login) gets a short idle timeout instead (default
//!   1 hour), so visitors who never log in cannot grow the store for weeks;
//! - [`Session::cycle_id`] (call it at login) moves the data to a new id and deletes the old one;
//!   [`Session::flush`] (logout) deletes the session from the store, so every server forgets it;
//! - keys that begin with `__` belong to one id: `cycle_id` and `flush` drop them. The CSRF secret
//!   lives under such a key, so it rotates with the id;
//! - [`Session::take`] removes a key in the store itself and answers its value to exactly one of
//!   any number of concurrent requests: use it for whatever may be used once (a captcha's answer);
//! - a session holds at most [`SessionConfig::max_keys`] keys and [`SessionConfig::max_bytes`]
//!   bytes of keys and JSON values (64 and 64 KiB by default): an insert past either answers
//!   [`SessionError::TooLarge`], changes nothing, and the request that returns it writes nothing;
//! - a request that carries the session cookie twice (a sibling sub-domain can set a second one,
//!   "cookie tossing") is treated as carrying none: it gets a fresh session, never either id, and
//!   is logged. Under HTTPS, a `__Host-` cookie name ([`SessionConfig::validate`] checks it) stops
//!   sub-domains from setting the cookie at all;
//! - a store that fails or takes longer than the timeout (default 2 s) turns the request into a
//!   503 page; requests that don't touch the session are unaffected;
//! - a response of a request that touched the session is this visitor's own: it gets
//!   `Cache-Control: private, no-store` (unless the view chose its caching) and `Vary: Cookie`.
//!
//! The session cookie is `HttpOnly`, `SameSite=Lax`, `Path=/`, `Secure` when configured, with a
//! `Domain` only when configured (`.example.test` shares one login across sub-domains).

mod cleanup;
mod config;
mod error;
mod handle;
mod id;
mod layer;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod save;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use cleanup::spawn_cleanup;
pub use config::{ConfigError, Expiry, SessionConfig};
pub use error::SessionError;
pub(crate) use error::{DuplicateCookie, StoreFailure};
pub use handle::{Session, Status};
pub(crate) use layer::keep_private;
pub(crate) use layer::{session_cookie_in, CookieId};
pub use layer::{SessionLayer, SessionService};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{default_pool_size, PostgresStore};
#[cfg(feature = "redis")]
pub use redis::{CacheStats, RedisStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use store::{Changes, Record, SessionStore, StorageKey, StoreError};

#[cfg(test)]
mod tests;
