//! Shared by the wire fuzzers: one in-process reference server per test binary.

use conformance::Target;
use reference_server::faults::Faults;
use std::sync::OnceLock;
use std::time::Duration;

pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub target: Target,
}

/// The in-process server (every protocol), started on first use.
pub fn fixture(wait: Duration) -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let target = runtime
            .block_on(Target::in_process(Faults::none(), wait))
            .expect("server");
        Fixture { runtime, target }
    })
}
