//! `tronpay admin …`: operators of the dashboard (`/admin`) — create one,
//! reset a password. The password is asked for on the terminal (twice, not
//! echoed) or, when standard input is not a terminal, read as its first line;
//! it is stored only as an argon2id hash.

use std::io::{BufRead, IsTerminal};

use clap::Subcommand;
use tronpay_db::{DbSettings, operators};
use tronpay_domain::operator::{self, MIN_PASSWORD_CHARS};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an operator who can sign in at /admin.
    CreateUser {
        /// Their sign-in name: 1 to 64 letters, digits, '.', '_', '-', '@'.
        name: String,
    },
    /// Set a new password for an operator; their sessions end.
    ResetPassword { name: String },
}

/// The password: asked twice on a terminal, else the first line of stdin.
fn read_password(name: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!(
            "Password for {name} (at least {MIN_PASSWORD_CHARS} characters): "
        ))?;
        let again = rpassword::prompt_password("The same again: ")?;
        anyhow::ensure!(first == again, "the two passwords differ; nothing was changed");
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Runs `command` against `db`, already checked.
pub async fn run(command: AdminCommand, db: &DbSettings) -> anyhow::Result<()> {
    let (AdminCommand::CreateUser { name } | AdminCommand::ResetPassword { name }) = &command;
    let name = operator::check_name(name)?.to_owned();
    let hash = operator::hash_password(&read_password(&name)?)?;
    let mut conn = crate::db::connect_with_tables(db).await?;
    match command {
        AdminCommand::CreateUser { .. } => {
            if operators::create(&mut conn, &name, &hash).await?.is_none() {
                anyhow::bail!(
                    "operator {name:?} exists already: `tronpay admin reset-password {name}` sets a new password"
                );
            }
            println!("Operator {name:?} created: they sign in at /admin.");
        }
        AdminCommand::ResetPassword { .. } => {
            if !operators::set_password(&mut conn, &name, &hash).await? {
                anyhow::bail!("no operator {name:?}: `tronpay admin create-user {name}` creates one");
            }
            println!("Password of {name:?} changed; their sessions have ended.");
        }
    }
    Ok(())
}
