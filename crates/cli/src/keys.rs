//! `tronpay keys …`: API keys of the merchant API v1 — create (printed
//! once), list, revoke.

use clap::Subcommand;
use tronpay_db::{DbSettings, api_keys};
use tronpay_domain::{ApiKeyText, Scope};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a key; it is printed once and stored only as a hash.
    Create {
        /// What the key is for (1 to 100 characters), e.g. `shop backend`.
        #[arg(long)]
        name: String,
        /// Comma-separated: payments:read, payments:write, operator.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
    /// Every key: prefix, name, scopes, created, last used, revoked.
    List,
    /// Revoke a key by its prefix (or the whole key); every API replica
    /// refuses it within API_KEY_CACHE_SECONDS.
    Revoke {
        /// The prefix `tronpay keys list` shows (`tpk_3f9a1c0b7e`, or the whole key).
        key: String,
    },
}

/// The prefix in `tpk_<prefix>` or a whole key, or the bare prefix.
fn prefix_of(text: &str) -> anyhow::Result<String> {
    if let Ok(key) = ApiKeyText::parse(text) {
        return Ok(key.prefix().to_owned());
    }
    let bare = text.strip_prefix(tronpay_domain::api_key::KEY_PREFIX).unwrap_or(text);
    let bare = bare.split('_').next().unwrap_or_default();
    if bare.is_empty() || !bare.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        anyhow::bail!("{text:?} is not a key prefix such as tpk_3f9a1c0b7e (see `tronpay keys list`)");
    }
    Ok(bare.to_ascii_lowercase())
}

/// Runs `command` with `db`, already checked ([`tronpay_runtime::Settings::validated`]).
pub async fn run(command: KeysCommand, db: &DbSettings) -> anyhow::Result<()> {
    // Arguments are checked before the database is touched.
    match &command {
        KeysCommand::Create { name, scopes } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
                anyhow::bail!("--name must be 1 to 100 characters without control characters");
            }
            for scope in scopes {
                scope.trim().parse::<Scope>().map_err(|_| {
                    anyhow::anyhow!("unknown scope {scope:?}: use payments:read, payments:write, operator")
                })?;
            }
        }
        KeysCommand::Revoke { key } => {
            prefix_of(key)?;
        }
        KeysCommand::List => {}
    }
    let mut conn = crate::db::connect_with_tables(db).await?;
    match command {
        KeysCommand::Create { name, scopes } => {
            let mut parsed: Vec<Scope> = Vec::new();
            for scope in &scopes {
                let scope = scope
                    .trim()
                    .parse::<Scope>()
                    .map_err(|_| anyhow::anyhow!("unknown scope {scope:?}"))?;
                if !parsed.contains(&scope) {
                    parsed.push(scope);
                }
            }
            let key = ApiKeyText::generate().map_err(anyhow::Error::msg)?;
            let row = api_keys::create(&mut conn, name.trim(), &key, &parsed).await?;
            println!("{}", key.expose());
            println!(
                "API key {:?} created with {} (prefix tpk_{}). It is shown only now: store it in your backend's secrets.",
                row.name,
                row.scopes.join(", "),
                row.prefix
            );
        }
        KeysCommand::List => {
            let rows = api_keys::list(&mut conn).await?;
            if rows.is_empty() {
                println!("No API keys yet: `tronpay keys create --name N --scopes payments:read,payments:write`.");
            }
            for row in rows {
                println!(
                    "tpk_{} {:?} {} created {} last used {}{}",
                    row.prefix,
                    row.name,
                    row.scopes.join(","),
                    row.created_at.format("%Y-%m-%d %H:%M:%S"),
                    row.last_used_at
                        .map_or_else(|| "never".to_owned(), |at| at.format("%Y-%m-%d %H:%M:%S").to_string()),
                    row.revoked_at
                        .map(|at| format!(" REVOKED {}", at.format("%Y-%m-%d %H:%M:%S")))
                        .unwrap_or_default()
                );
            }
        }
        KeysCommand::Revoke { key } => {
            let prefix = prefix_of(&key)?;
            match api_keys::revoke(&mut conn, &prefix).await? {
                None => anyhow::bail!("no API key tpk_{prefix} (see `tronpay keys list`)"),
                Some(false) => println!("API key tpk_{prefix} was already revoked."),
                Some(true) => println!(
                    "API key tpk_{prefix} revoked; every API replica refuses it within API_KEY_CACHE_SECONDS (default 5 s)."
                ),
            }
        }
    }
    Ok(())
}
