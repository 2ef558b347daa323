//! `bgp-speaker`: the `ironlb bgp-announce` tool as a binary of this crate, so the interop
//! tests and the benchmark can run it without building the whole `ironlb` binary. Same flags.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match ironlb_announce::bgp::tool::ToolConfig::from_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(ironlb_announce::bgp::tool::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
