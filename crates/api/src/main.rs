//! `tronpay-api`: the merchant HTTP API.

use tronpay_api::{BINARY, Config, run};

fn main() -> std::process::ExitCode {
    tronpay_runtime::service::main(&BINARY, Config::load, run)
}
