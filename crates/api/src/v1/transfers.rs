//! Transfers in the merchant API: a payment's transfers, the list of
//! transfers (or only those an operator may assign), and the operator's
//! assignment of an unmatched or late transfer to a payment — once, logged,
//! under the locks matching takes.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use tronpay_db::DbError;
use tronpay_db::matching::{self, StoredTransfer, TransferCursor, TransferFilter};
use tronpay_db::models::PaymentRow;
use tronpay_db::{logs, payments, webhooks};
use tronpay_domain::events::WebhookEvent;
use tronpay_domain::wire::{PaymentResource, Rfc3339, TransferResource};
use tronpay_domain::{LogEvent, MatchKind, PaymentStatus, Scope, TransferId, TransferState, TxId, UsdtAmount};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::payments::{Actor, address_filter, cut_page, json, load, page_limit, payment_id, resource};
use super::problem::{self, Problem, ProblemBody};
use crate::chain_events::apply::metadata;
use crate::routes::read_body;
use crate::state::AppState;

/// A transfer with what tronpay made of it.
#[derive(Serialize, ToSchema)]
#[schema(as = Transfer)]
pub struct TransferView<'a> {
    #[serde(flatten)]
    #[schema(inline)]
    pub transfer: TransferResource<'a>,
    /// `detected` (its block is not final yet), `confirmed` (final) or
    /// `dropped` (not in the final chain; it never counts).
    #[schema(example = "confirmed")]
    pub state: &'static str,
    /// How it counted once final: `exact`, `partial`, `completing`,
    /// `overpaid`, `late`, `unmatched`, `ignored` (zero or dust) or
    /// `assigned` (by an operator); `null` until then.
    #[schema(example = "exact")]
    pub match_kind: Option<&'static str>,
    /// The payment it counts for.
    pub payment_id: Option<&'a str>,
    /// The payment it was shown on while not final.
    pub detected_payment_id: Option<&'a str>,
    /// When it was matched (final and applied).
    pub applied_at: Option<Rfc3339>,
}

impl<'a> TransferView<'a> {
    fn of(stored: &'a StoredTransfer) -> Self {
        Self {
            transfer: TransferResource::of(&stored.transfer),
            state: stored.status.as_str(),
            match_kind: stored.match_kind.map(MatchKind::as_str),
            payment_id: stored.payment_id.as_ref().map(|id| id.as_str()),
            detected_payment_id: stored.detected_payment_id.as_ref().map(|id| id.as_str()),
            applied_at: stored.applied_at.map(Rfc3339::from_naive),
        }
    }
}

/// Transfers, oldest or newest first as the route says.
#[derive(Serialize, ToSchema)]
pub struct TransferPage<'a> {
    #[schema(value_type = Vec<TransferView>)]
    pub data: Vec<TransferView<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last page (always
    /// `null` for a payment's transfers, which come in one page).
    pub next_cursor: Option<String>,
}

/// The transfers credited to a payment or shown on it while not final, in
/// chain order.
#[utoipa::path(
    get, path = "/v1/payments/{id}/transfers", tag = "transfers", operation_id = "listPaymentTransfers",
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "The payment's transfers", body = TransferPage),
        (status = 404, description = "No such payment", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:read"]))
)]
pub async fn of_payment(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsRead)?;
    let payment = load(&state, &path).await?;
    let mut conn = state.pool.get().await?;
    let rows = matching::transfers_of(&mut conn, &payment.id).await?;
    drop(conn);
    json(
        StatusCode::OK,
        &TransferPage {
            data: rows.iter().map(TransferView::of).collect(),
            next_cursor: None,
        },
    )
}

/// Filters and page of `GET /v1/transfers`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransferQuery {
    /// `true`: only final transfers an operator may assign (`unmatched` and
    /// `late`).
    pub unmatched: Option<bool>,
    /// Only transfers to this address (Base58Check).
    pub address: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page position: the last row's `(block_number, txid, log_index)`.
mod cursor {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::TransferCursor;

    pub fn encode(block: i64, txid: &str, index: i32) -> String {
        URL_SAFE_NO_PAD.encode(format!("{block}:{txid}:{index}"))
    }

    pub fn decode(text: &str) -> Option<TransferCursor> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        let mut parts = text.split(':');
        let block = parts.next()?.parse().ok()?;
        let txid = tronpay_domain::TxId::parse(parts.next()?).ok()?;
        let index = parts.next()?.parse().ok()?;
        parts.next().is_none().then(|| (block, txid.as_str().to_owned(), index))
    }
}

/// Lists transfers to the watched addresses, newest first, a page at a
/// time; `unmatched=true` lists those an operator may assign.
#[utoipa::path(
    get, path = "/v1/transfers", tag = "transfers", operation_id = "listTransfers",
    params(TransferQuery),
    responses(
        (status = 200, description = "A page of transfers", body = TransferPage),
        (status = 400, description = "Invalid filter or cursor", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["operator"]))
)]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<TransferQuery>,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::Operator)?;
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;
    let filter = TransferFilter {
        assignable: query.unmatched.unwrap_or(false),
        address: query.address.as_deref().map(address_filter).transpose()?,
        kind: None,
    };
    let after = query
        .cursor
        .as_deref()
        .map(|text| {
            cursor::decode(text)
                .ok_or_else(|| Problem::new(problem::INVALID_CURSOR, "cursor is not one this API issued"))
        })
        .transpose()?;
    let mut conn = state.pool.get().await?;
    let mut rows = matching::list_transfers(&mut conn, &filter, after, limit + 1).await?;
    drop(conn);
    let more = cut_page(&mut rows, limit);
    let next_cursor = rows.last().filter(|_| more).map(|last| {
        let id = &last.transfer.id;
        cursor::encode(
            i64::try_from(last.transfer.block_number).unwrap_or(i64::MAX),
            id.txid.as_str(),
            i32::try_from(id.log_index).unwrap_or(i32::MAX),
        )
    });
    json(
        StatusCode::OK,
        &TransferPage {
            data: rows.iter().map(TransferView::of).collect(),
            next_cursor,
        },
    )
}

/// `POST /v1/transfers/{txid}/{log_index}/assign`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTransfer {
    /// The payment to credit: `pending`, or `expired` (a late buyer the
    /// merchant accepts).
    pub payment_id: String,
}

/// The payment credited and the transfer, after an assignment.
#[derive(Serialize, ToSchema)]
pub struct Assignment<'a> {
    #[schema(value_type = PaymentResource)]
    pub payment: PaymentResource<'a>,
    #[schema(value_type = TransferView)]
    pub transfer: TransferView<'a>,
}

/// Why an assignment did not happen.
pub(crate) enum Refused {
    Db(DbError),
    Problem(Problem),
}

impl From<DbError> for Refused {
    fn from(error: DbError) -> Self {
        Self::Db(error)
    }
}

impl From<diesel::result::Error> for Refused {
    fn from(error: diesel::result::Error) -> Self {
        Self::Db(error.into())
    }
}

fn refuse(kind: problem::Kind, detail: String) -> Refused {
    Refused::Problem(Problem::new(kind, detail))
}

/// Credits an unmatched or late transfer to a payment (scope `operator`).
///
/// The transfer must be final and counted for no payment (`unmatched`, or
/// `late`); the payment must be `pending` or `expired`. The payment's
/// received amount grows by the transfer's; when it reaches the amount the
/// payment completes (and `payment.completed` is sent), else a pending
/// payment is partially paid. A transfer is assigned once: again is a 409
/// `already_assigned`. The addresses of the transfer and the payment are
/// locked as matching locks them, so an assignment and matching never
/// interleave.
#[utoipa::path(
    post, path = "/v1/transfers/{txid}/{log_index}/assign", tag = "transfers", operation_id = "assignTransfer",
    params(
        ("txid" = String, Path, description = "The transaction id (64 hex digits)"),
        ("log_index" = u32, Path, description = "The Transfer event's log index in the transaction"),
    ),
    request_body = AssignTransfer,
    responses(
        (status = 200, description = "Assigned", body = Assignment),
        (status = 400, description = "Invalid body", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such transfer or payment", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Already assigned, or not assignable", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["operator"]))
)]
pub async fn assign(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::Operator)?;
    let (txid, index) = path.into_inner();
    let no_transfer = || Problem::new(problem::NOT_FOUND, format!("no transfer {txid:.70}:{index:.10}"));
    let transfer_id = TransferId {
        txid: TxId::parse(&txid).map_err(|_| no_transfer())?,
        log_index: index.parse().map_err(|_| no_transfer())?,
    };
    let body = read_body(&request, payload, state.settings.max_body_bytes).await?;
    let assign: AssignTransfer = serde_json::from_slice(&body).map_err(|error| {
        Problem::new(
            problem::INVALID_JSON,
            format!("the body is not a valid assignment: {error}"),
        )
    })?;
    let target = payment_id(&assign.payment_id)?;
    let outcome = assign_transfer(&state, &transfer_id, &target, Actor::ApiKey(&caller.prefix)).await;
    let (payment, stored) = match outcome {
        Ok(done) => done,
        Err(Refused::Problem(problem)) => return Err(problem),
        Err(Refused::Db(error)) => return Err(error.into()),
    };
    tracing::info!(
        transfer = %stored.transfer.id,
        payment_id = %payment.id,
        status = %payment.status(),
        api_key = %caller.prefix,
        "transfer assigned by an operator"
    );
    json(
        StatusCode::OK,
        &Assignment {
            payment: resource(&payment)?,
            transfer: TransferView::of(&stored),
        },
    )
}

/// The assignment itself, under the locks: checks, credit, transfer, log
/// rows and webhooks.
/// Credits the final, uncounted transfer `transfer_id` to payment `target`
/// (pending or expired) in one transaction, under the same locks as
/// matching, with its audit-trail row naming `by` and its webhook; the
/// payment completes when the credits reach its amount. The API's assign and
/// the dashboard's both come here.
pub(crate) async fn assign_transfer(
    state: &AppState,
    transfer_id: &TransferId,
    target: &tronpay_domain::PaymentId,
    by: Actor<'_>,
) -> Result<(PaymentRow, StoredTransfer), Refused> {
    let no_transfer = || refuse(problem::NOT_FOUND, format!("no transfer {transfer_id}"));
    let mut conn = state.pool.get().await.map_err(|error| Refused::Problem(error.into()))?;
    let found = matching::find_transfer(&mut conn, transfer_id)
        .await?
        .ok_or_else(no_transfer)?;
    let assigned = diesel_async::AsyncConnection::transaction::<_, Refused, _>(&mut conn, async |conn| {
        let payment_address = payments::find(conn, target.as_str())
            .await?
            .map(|row| row.wallet_address)
            .ok_or_else(|| refuse(problem::NOT_FOUND, format!("no payment {target}")))?;
        // Addresses in a fixed order, as a batch of confirmations takes them.
        let addresses = std::collections::BTreeSet::from([found.transfer.to.to_base58(), payment_address]);
        for address in &addresses {
            matching::lock_address(conn, address).await?;
        }
        let stored = matching::lock_transfer(conn, transfer_id)
            .await?
            .ok_or_else(no_transfer)?;
        let payment = payments::lock(conn, target)
            .await?
            .ok_or_else(|| refuse(problem::NOT_FOUND, format!("no payment {target}")))?;
        credit(conn, by, stored, payment).await
    })
    .await;
    if let Ok((payment, _)) = &assigned {
        let completed = u64::from(payment.status() == PaymentStatus::Completed);
        crate::metrics::Tally {
            matched: vec![MatchKind::Assigned],
            completed,
            expired: 0,
        }
        .record();
    }
    assigned
}

async fn credit(
    conn: &mut AsyncPgConnection,
    by: Actor<'_>,
    stored: StoredTransfer,
    payment: PaymentRow,
) -> Result<(PaymentRow, StoredTransfer), Refused> {
    let transfer = &stored.transfer;
    match stored.match_kind {
        Some(kind) if stored.status == TransferState::Confirmed && matching::ASSIGNABLE.contains(&kind) => {}
        Some(MatchKind::Ignored) | None => {
            return Err(refuse(
                problem::NOT_ASSIGNABLE,
                format!(
                    "transfer {} is {} and {}: only final transfers that no payment counted can be assigned",
                    transfer.id,
                    stored.status,
                    stored.match_kind.map_or("not matched yet", MatchKind::as_str)
                ),
            ));
        }
        Some(kind) => {
            return Err(refuse(
                problem::ALREADY_ASSIGNED,
                format!(
                    "transfer {} already counts for payment {} ({kind})",
                    transfer.id,
                    stored.payment_id.as_ref().map_or("?", |id| id.as_str())
                ),
            ));
        }
    }
    let status = payment.status();
    if !matches!(status, PaymentStatus::Pending | PaymentStatus::Expired) {
        return Err(refuse(
            problem::NOT_ASSIGNABLE,
            format!(
                "payment {} is {status}: only a pending or expired payment can be credited",
                payment.id
            ),
        ));
    }
    let corrupt = |error| DbError::corrupt("payment", &payment.id, format!("invalid amount: {error}"));
    let expected = payment.amount_due().map_err(corrupt)?;
    let before = payment.received_amount().map_err(corrupt)?.unwrap_or(UsdtAmount::ZERO);
    let received = before
        .checked_add(transfer.amount)
        .ok_or_else(|| DbError::bug(format!("payment {}: credits overflow", payment.id)))?;
    let completes = received >= expected;
    let credited = matching::assign_credit(conn, &payment.id, received, completes.then_some(&transfer.id.txid))
        .await?
        .ok_or_else(|| DbError::bug(format!("payment {} changed under its lock", payment.id)))?;
    if !matching::mark_assigned(conn, &transfer.id, &payment.id).await? {
        return Err(DbError::bug(format!("transfer {} changed under its lock", transfer.id)).into());
    }
    let previous = stored.match_kind.map_or("unmatched", MatchKind::as_str);
    let mut details: serde_json::Value =
        serde_json::from_str(&metadata(transfer, "amount_usdt", transfer.amount)).unwrap_or_default();
    details["previous_match_kind"] = previous.into();
    let who = match by {
        Actor::ApiKey(prefix) => {
            details["api_key"] = prefix.into();
            format!("operator key {prefix}")
        }
        Actor::Operator(name) => {
            details["operator"] = name.into();
            format!("operator {name}")
        }
    };
    logs::insert(
        conn,
        &payment.id,
        LogEvent::Assigned,
        &format!(
            "Transfer {} of {} USDT ({previous}) assigned by {who}: {received} of {expected} USDT received",
            transfer.id, transfer.amount
        ),
        Some(&details.to_string()),
    )
    .await?;
    let event = if completes {
        logs::insert(
            conn,
            &payment.id,
            LogEvent::Completed,
            &format!(
                "Payment completed with transaction {} (assigned by an operator)",
                transfer.id.txid
            ),
            Some(&metadata(transfer, "received_amount", received)),
        )
        .await?;
        if let Some(excess) = received
            .checked_sub(expected)
            .filter(|excess| *excess > UsdtAmount::ZERO)
        {
            logs::insert(
                conn,
                &payment.id,
                LogEvent::Overpaid,
                &format!("Overpaid by {excess} USDT (received {received}, expected {expected})"),
                Some(&metadata(transfer, "excess_usdt", excess)),
            )
            .await?;
        }
        Some(WebhookEvent::Completed)
    } else {
        (status == PaymentStatus::Pending).then_some(WebhookEvent::PartiallyPaid)
    };
    if let Some(event) = event.filter(|event| credited.wants(*event)) {
        webhooks::enqueue(conn, &credited, event, Some(transfer)).await?;
    }
    let stored = StoredTransfer {
        payment_id: Some(payment.id.clone()),
        match_kind: Some(MatchKind::Assigned),
        ..stored
    };
    Ok((credited, stored))
}

#[cfg(test)]
mod tests {
    use super::cursor;

    #[test]
    fn transfer_cursors_round_trip_and_garbage_is_refused() {
        let txid = "a".repeat(64);
        let text = cursor::encode(42, &txid, 3);
        assert_eq!(cursor::decode(&text), Some((42, txid, 3)));
        for bad in ["", "!!", "NDI6eHg6Mw", "NDI"] {
            assert_eq!(cursor::decode(bad), None, "{bad}");
        }
    }
}
