//! `tronpay-chain-watcher`: follows the TRON chain.

use tronpay_chain_watcher::{BINARY, Config, run};

fn main() -> std::process::ExitCode {
    tronpay_runtime::service::main(&BINARY, Config::load, run)
}
