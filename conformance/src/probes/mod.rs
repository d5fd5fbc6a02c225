//! Client validation: the suite plays the server and grades the client that connects.

pub mod nodemgr;
