//! `tronpay addresses …`: the receiving addresses of the `xpub` and `pool`
//! modes (PRODUCT §10). `derive` prints the addresses of the account key so
//! the merchant can compare them with their wallet before trusting tronpay
//! with payments; `import` fills the pool; `list` shows what was handed out
//! and what to sweep.

use clap::Subcommand;
use serde::Deserialize;
use tronpay_db::DbSettings;
use tronpay_domain::xpub::{AccountXpub, MAX_INDEX};
use tronpay_domain::{TronAddress, UsdtAmount};

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
    /// Every address tronpay handed out and every pool address: source,
    /// index and derivation path, the payment holding it (or, for a free
    /// pool address, the last one), and the USDT received there in final
    /// transfers (what to sweep).
    List,
    /// Add the addresses of FILE (one Base58Check address per line; blank
    /// lines and lines starting with # are skipped) to the address pool of
    /// ADDRESS_MODE=pool. All or nothing: a bad checksum, a line twice, or
    /// an address tronpay already knows adds none.
    Import {
        /// The file; `-` reads standard input.
        file: std::path::PathBuf,
    },
}

/// Most problems `import` names before it stops listing them.
const MAX_REPORTED: usize = 20;

/// The addresses of an import file's `text`, in order, or every problem
/// with its line number (1-based): bad addresses and repeated ones.
fn pool_file(text: &str) -> Result<Vec<String>, Vec<String>> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let (mut addresses, mut problems) = (Vec::new(), Vec::new());
    for (number, line) in text.lines().enumerate().map(|(index, line)| (index + 1, line.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match TronAddress::parse(line) {
            Err(error) => problems.push(format!("line {number}: {line:?} is not a TRON address: {error}")),
            Ok(address) => {
                let address = address.to_base58();
                match seen.entry(address.clone()) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        problems.push(format!("line {number}: {address} is already on line {}", first.get()));
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(number);
                        addresses.push(address);
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(addresses)
    } else {
        Err(problems)
    }
}

/// One error listing at most [`MAX_REPORTED`] of `problems`.
fn refuse(what: &str, problems: &[String]) -> anyhow::Error {
    let mut text = format!("{what}; nothing was imported:");
    for problem in problems.iter().take(MAX_REPORTED) {
        text.push_str("\n  ");
        text.push_str(problem);
    }
    if problems.len() > MAX_REPORTED {
        text.push_str(&format!("\n  … and {} more", problems.len() - MAX_REPORTED));
    }
    anyhow::anyhow!(text)
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
        AddressesCommand::Import { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|error| anyhow::anyhow!("reading standard input: {error}"))?
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|error| anyhow::anyhow!("reading {}: {error}", file.display()))?
            };
            let addresses = pool_file(&text)
                .map_err(|problems| refuse(&format!("{} problem(s) in the file", problems.len()), &problems))?;
            if addresses.is_empty() {
                anyhow::bail!("no address in the file (one Base58Check address per line)");
            }
            let mut conn = crate::db::connect_with_tables(&db()?).await?;
            match tronpay_db::receiving::import_pool(&mut conn, &addresses).await? {
                tronpay_db::receiving::Imported::AlreadyKnown(known) => {
                    let problems: Vec<String> = known
                        .iter()
                        .map(|(address, source)| match source.as_str() {
                            "pool" => format!("{address} is in the pool already"),
                            _ => format!("{address} is derived from the account key (XPUB)"),
                        })
                        .collect();
                    return Err(refuse(
                        &format!("{} address(es) tronpay knows already", problems.len()),
                        &problems,
                    ));
                }
                tronpay_db::receiving::Imported::Added(added) => {
                    let counts = tronpay_db::receiving::pool_counts(&mut conn).await?;
                    println!(
                        "Imported {added} address(es). The pool holds {} address(es), {} of them free.",
                        counts.total, counts.free
                    );
                }
            }
            Ok(())
        }
        AddressesCommand::List => {
            let mut conn = crate::db::connect_with_tables(&db()?).await?;
            let rows = tronpay_db::receiving::assigned(&mut conn).await?;
            if rows.is_empty() {
                println!(
                    "No addresses handed out yet (ADDRESS_MODE=xpub assigns them to payments made without one) and \
                     no pool (tronpay addresses import FILE fills it)."
                );
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
                let holder = match (&row.payment_id, &row.last_payment_id) {
                    (Some(payment), _) => format!("payment {payment}"),
                    (None, Some(last)) => format!("free (last payment {last})"),
                    (None, None) => "free".to_owned(),
                };
                println!(
                    "{}\t{}\t{index}\t{path}\t{holder}\treceived {received} USDT in {} transfer(s)",
                    row.address, row.source, row.transfers
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
