//! Compiles this crate's own copy of the eCapture types from the schema in fixtures/, with a
//! pure-Rust protobuf compiler so that the build needs nothing but cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = "../fixtures/ecapture/ecaptureq.proto";
    println!("cargo:rerun-if-changed={schema}");
    let descriptors = protox::compile([schema], ["../fixtures/ecapture"])?;
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
