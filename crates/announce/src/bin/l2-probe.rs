//! `l2-probe`: the client side of the layer 2 namespace tests (see `l2::probe`), run inside a
//! namespace: `l2-probe inject IF VIP COUNT`, `l2-probe latency IF SOURCE_IP VIP COUNT`,
//! `l2-probe flood IF SOURCE_IP VIP SECONDS`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match ironlb_announce::l2::probe::run_args(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}
