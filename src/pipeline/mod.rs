//! What the proxy does to requests and responses on their way through.
//! `request`: the parsed client body and the per-backend rewrite.

pub mod request;
