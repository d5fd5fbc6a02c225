//! The reference server: every protocol of the project, implemented as the documents say.
//!
//! Protocol logic lives in sans-IO cores under [`protocol`]; [`transport`] drives them over
//! sockets; [`store`] persists; [`clients`] holds the reference clients (the node agent).

pub mod clients;
pub mod externals;
pub mod faults;
pub mod media;
pub mod protocol;
pub mod server;
pub mod store;
pub mod transport;
