//! `tronpay db export`: the original export format, written as a stream.
//!
//! The payments are read page by page in `(created_at, id)` order inside one
//! read-only REPEATABLE READ transaction, so `total_payments` matches the
//! rows written, memory stays flat however large the table is, and a
//! concurrent writer never makes the file inconsistent. The file appears
//! under its name only once complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tronpay_db::models::{PaymentRow, epoch_seconds};
use tronpay_db::{AsyncPgConnection, payments};
use tronpay_domain::wire::{EpochSeconds, PaymentView};
use tronpay_domain::{JsonAmount, UsdtAmount};

const PAGE: i64 = 1_000;

/// One payment as exported: the public fields, then the internal ones
/// (`to_dict(include_internal=True)`), then tronpay's additions.
#[derive(Serialize)]
struct ExportedPayment<'a> {
    #[serde(flatten)]
    public: PaymentView<'a>,
    callback_url: &'a str,
    last_checked_timestamp: i64,
    callback_attempts: i32,
    last_callback_attempt: Option<EpochSeconds>,
    callback_success: bool,
    expires_at: EpochSeconds,
    notify_events: &'a [String],
    api_version: i16,
    redirect_url: Option<&'a str>,
    /// The text as given, spliced in.
    metadata: Option<&'a serde_json::value::RawValue>,
    checkout_url: Option<&'a str>,
    /// `null` when it is the expected amount.
    amount_to_pay: Option<JsonAmount>,
}

pub async fn run(mut conn: AsyncPgConnection, file: Option<PathBuf>) -> anyhow::Result<()> {
    let path = file.unwrap_or_else(|| {
        PathBuf::from(format!(
            "payments_export_{}.json",
            chrono::Local::now().format("%Y%m%d_%H%M%S")
        ))
    });
    let partial = PathBuf::from(format!("{}.partial", path.display()));
    println!("Exporting payments to {}...", path.display());
    let out = File::create(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = BufWriter::new(out);

    let written = conn
        .build_transaction()
        .read_only()
        .repeatable_read()
        .run(async |conn| {
            let total = payments::count(conn).await?;
            write!(
                out,
                "{{\n  \"export_date\": {},\n  \"exported_by\": \"tronpay {}\",\n  \"total_payments\": {total},\n  \"payments\": [",
                serde_json::to_string(&chrono::Utc::now().naive_utc().format("%Y-%m-%dT%H:%M:%S%.6f").to_string())?,
                env!("CARGO_PKG_VERSION"),
            )?;
            let progress = ProgressBar::new(u64::try_from(total).unwrap_or(0));
            progress.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} payments ({per_sec}, {eta} left)")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let mut written = 0u64;
            let mut after = None;
            loop {
                let page = payments::page_after(conn, after.take(), PAGE).await?;
                for row in &page {
                    write_payment(&mut out, row, written == 0)?;
                    written += 1;
                }
                progress.set_position(written);
                match page.last() {
                    Some(last) if page.len() == usize::try_from(PAGE).unwrap_or(usize::MAX) => {
                        after = Some((last.created_at, last.id.to_string()));
                    }
                    _ => break,
                }
            }
            progress.finish_and_clear();
            out.write_all(if written == 0 { b"]\n}\n" } else { b"\n  ]\n}\n" })?;
            Ok::<_, anyhow::Error>(written)
        })
        .await?;

    out.into_inner()
        .map_err(|error| error.into_error())
        .and_then(|file| file.sync_all())
        .with_context(|| format!("cannot write {}", partial.display()))?;
    std::fs::rename(&partial, &path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))?;
    println!("Exported {written} payments to {}", path.display());
    Ok(())
}

/// Writes one payment, pretty-printed and indented as an array element.
fn write_payment(out: &mut impl Write, row: &PaymentRow, first: bool) -> anyhow::Result<()> {
    let payment = ExportedPayment {
        public: row
            .view()
            .with_context(|| format!("payment {} has an invalid amount", row.id))?,
        callback_url: &row.callback_url,
        last_checked_timestamp: row.last_checked_timestamp,
        callback_attempts: row.callback_attempts,
        last_callback_attempt: row.last_callback_attempt.map(epoch_seconds),
        callback_success: row.callback_success,
        expires_at: epoch_seconds(row.expires_at),
        notify_events: &row.notify_events,
        api_version: row.api_version,
        redirect_url: row.redirect_url.as_deref(),
        metadata: row
            .metadata_json
            .as_deref()
            .and_then(|text| serde_json::from_str::<&serde_json::value::RawValue>(text).ok()),
        checkout_url: row.checkout_url.as_deref(),
        amount_to_pay: row
            .amount_to_pay
            .as_ref()
            .and_then(|amount| UsdtAmount::from_decimal(amount).ok())
            .map(JsonAmount),
    };
    let text = serde_json::to_string_pretty(&payment)?;
    out.write_all(if first { b"\n" } else { b",\n" })?;
    for (index, line) in text.lines().enumerate() {
        if index > 0 {
            out.write_all(b"\n")?;
        }
        out.write_all(b"    ")?;
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}
