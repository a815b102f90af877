//! Virtual keys and teams (docs/keys-and-spend.md): who a request is, what
//! it may use, and what it has spent.
//!
//! Keys made through the admin API live in the request log's database
//! ([`store`]), as a SHA-256 of the secret; keys declared in the config
//! (`proxy_settings.auth.keys`) live in memory and cannot change through
//! the API. [`Keys`] holds both as one in-memory index, looked up by the
//! hash of the presented secret on each request, and reloads the
//! database's tables when their fingerprint changes (a background poll),
//! so a key revoked on one instance is refused by every instance within
//! seconds. Spend counters are in [`spend`].

pub mod model;
pub mod secret;
pub mod service;
pub mod spend;
pub mod store;
