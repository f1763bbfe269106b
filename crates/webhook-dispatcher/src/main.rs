//! `tronpay-webhook-dispatcher`: delivers signed webhooks.

use tronpay_webhook_dispatcher::{BINARY, Config, run};

fn main() -> std::process::ExitCode {
    tronpay_runtime::service::main(&BINARY, Config::load, run)
}
