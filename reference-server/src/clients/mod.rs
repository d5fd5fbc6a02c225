//! Reference clients of the protocols.

pub mod collector;
pub mod device;
pub mod node_agent;
pub mod reconnect;
pub mod sysinfo;
