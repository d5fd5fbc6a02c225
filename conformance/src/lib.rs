//! The conformance suite: cases that judge any implementation of the protocols, servers by
//! URL, spawned command or in-process, and clients by playing the server.

pub mod case;
pub mod cases;
pub mod check;
pub mod client;
pub mod expectations;
pub mod harness;
pub mod probes;
pub mod report;
pub mod runner;
pub mod target;
pub mod wire;

pub use case::{Case, Level, Source, Verdict};
pub use report::Report;
pub use runner::RunOptions;
pub use target::Target;
