//! `tronpay addresses …`: the receiving addresses of the `xpub` mode
//! (PRODUCT §10). `derive` prints the addresses of the account key so the
//! merchant can compare them with their wallet before trusting tronpay with
//! payments.

use clap::Subcommand;
use serde::Deserialize;
use tronpay_db::DbSettings;
use tronpay_domain::UsdtAmount;
use tronpay_domain::xpub::{AccountXpub, MAX_INDEX};

/// Most addresses one `derive` prints.
const MAX_COUNT: u32 = 10_000;

#[derive(Subcommand)]
pub enum AddressesCommand {
    /// Print index, derivation path and address of the receiving addresses
    /// m/44'/195'/0'/0/i of the account key (XPUB, or --xpub).
    Derive {
        /// How many addresses (1 to 10,000).
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// The first index.
        #[arg(long, default_value_t = 0)]
        start: u32,
        /// The account's extended public key (xpub…, at m/44'/195'/0');
        /// default: the XPUB setting.
        #[arg(long)]
        xpub: Option<String>,
    },
    /// Every address tronpay handed out: source, index and derivation path,
    /// the payment holding it, and the USDT received there in final
    /// transfers (what to sweep).
    List,
}

/// The settings `derive` reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct XpubSettings {
    /// `XPUB`.
    pub xpub: String,
}

/// Runs `command`; `settings` supplies XPUB when no `--xpub` is given, `db`
/// the database for `list`.
pub async fn run(
    command: AddressesCommand,
    settings: &XpubSettings,
    db: impl FnOnce() -> anyhow::Result<DbSettings>,
) -> anyhow::Result<()> {
    match command {
        AddressesCommand::List => {
            let mut conn = crate::db::connect_with_tables(&db()?).await?;
            let rows = tronpay_db::receiving::assigned(&mut conn).await?;
            if rows.is_empty() {
                println!("No addresses handed out yet (ADDRESS_MODE=xpub assigns them to payments made without one).");
            }
            for row in rows {
                let (index, path) = row
                    .derivation_index
                    .and_then(|index| u32::try_from(index).ok())
                    .map_or_else(
                        || ("-".to_owned(), "-".to_owned()),
                        |index| (index.to_string(), AccountXpub::path(index)),
                    );
                let received = UsdtAmount::from_decimal(&row.received)
                    .map_or_else(|_| row.received.to_string(), |amount| amount.to_string());
                println!(
                    "{}\t{}\t{index}\t{path}\tpayment {}\treceived {received} USDT in {} transfer(s)",
                    row.address,
                    row.source,
                    row.payment_id.as_deref().unwrap_or("-"),
                    row.transfers
                );
            }
            Ok(())
        }
        AddressesCommand::Derive { count, start, xpub } => {
            if !(1..=MAX_COUNT).contains(&count) {
                anyhow::bail!("--count must be between 1 and {MAX_COUNT}");
            }
            let last = u64::from(start) + u64::from(count) - 1;
            if last > u64::from(MAX_INDEX) {
                anyhow::bail!("the last index would be {last}; indexes end at {MAX_INDEX}");
            }
            let text = xpub.unwrap_or_else(|| settings.xpub.clone());
            if text.trim().is_empty() {
                anyhow::bail!("no extended public key: set XPUB or pass --xpub xpub…");
            }
            let account = AccountXpub::parse(&text).map_err(|error| anyhow::anyhow!("XPUB: {error}"))?;
            for index in start..=start + (count - 1) {
                match account.address(index) {
                    Ok(address) => println!("{index}\t{}\t{address}", AccountXpub::path(index)),
                    Err(error) => println!("{index}\t{}\t-\t({error})", AccountXpub::path(index)),
                }
            }
            Ok(())
        }
    }
}
