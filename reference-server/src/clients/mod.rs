//! Reference clients of the protocols.

pub mod node_agent;
pub mod sysinfo;
