//! `/v1/payments`: create (idempotent), read, list with cursor pagination,
//! cancel, and the audit trail of a payment.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tronpay_db::idempotency::{NewRecord, Stored};
use tronpay_db::models::{DbStatus, PaymentRow};
use tronpay_db::payments::{self, ADDRESS_PLACEHOLDER, AddressChoice, CreateError, CreatedV1, ListFilter};
use tronpay_db::{logs, matching, webhooks};
use tronpay_domain::events::WebhookEvent;
use tronpay_domain::wire::{PaymentResource, Rfc3339};
use tronpay_domain::{
    CallbackUrl, JsonAmount, LogEvent, OrderId, PaymentId, PaymentStatus, Scope, TronAddress, UsdtAmount,
};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::problem::{self, Problem, ProblemBody};
use crate::routes::read_body;
use crate::settings::Receiving;
use crate::state::AppState;

/// Largest `metadata`, in bytes of its JSON text.
pub const MAX_METADATA_BYTES: usize = 4096;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Longest cancel `reason`, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest `redirect_url`.
pub const MAX_REDIRECT_URL_LEN: usize = 2048;
/// Default and largest `limit` of a list.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// `POST /v1/payments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayment {
    /// The merchant's order reference (1 to 100 characters); an order id has
    /// at most one pending payment.
    #[schema(example = "order-1001")]
    pub order_id: String,
    /// USDT as a decimal string: positive, 0.01 to 1,000,000, at most 6
    /// decimals. A JSON number is refused (it could lose digits).
    #[schema(value_type = String, example = "12.34")]
    pub amount: AmountText,
    /// The TRON address (Base58Check) the buyer pays to. Without it, tronpay
    /// assigns one as `ADDRESS_MODE` says (`xpub`: an address of its own,
    /// derived from the account key; `pool`: a free address of the imported
    /// pool, lent until a grace period after the payment ends;
    /// `unique_amount`: the shared address, with `amount_to_pay` raised to
    /// be unique there); with `ADDRESS_MODE=given` it is required.
    #[schema(example = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")]
    pub address: Option<String>,
    /// Seconds until the payment expires (60 to 31,622,400); default
    /// `PAYMENT_TTL_SECONDS`. Not together with `expires_at`.
    #[schema(minimum = 60, maximum = 31_622_400)]
    pub expires_in: Option<i64>,
    /// When the payment expires (RFC 3339), 60 s to 366 days from now.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<String>,
    /// Where signed webhooks are POSTed (http(s), public host); none without it.
    pub notify_url: Option<String>,
    /// Events to send to `notify_url` (`payment.completed` is always sent);
    /// default `["payment.completed"]`.
    #[schema(value_type = Option<Vec<String>>, example = json!(["payment.detected", "payment.completed"]))]
    pub notify_events: Option<Vec<String>>,
    /// Where the checkout page sends the buyer once paid (http(s)).
    pub redirect_url: Option<String>,
    /// Any JSON object up to 4 KiB, stored and returned as given.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Box<RawValue>>,
}

/// An amount as it must be sent: a JSON string.
#[derive(Debug)]
pub struct AmountText(pub String);

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = AmountText;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("amount as a decimal string such as \"12.34\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<AmountText, E> {
                Ok(AmountText(text.to_owned()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The checked request, ready to store.
struct Checked {
    order_id: OrderId,
    amount: UsdtAmount,
    /// `None`: tronpay assigns one.
    address: Option<TronAddress>,
    expires_at: NaiveDateTime,
    notify_url: Option<CallbackUrl>,
    notify_events: Vec<String>,
    redirect_url: Option<String>,
}

fn invalid(kind: problem::Kind, detail: impl Into<std::borrow::Cow<'static, str>>) -> Problem {
    Problem::new(kind, detail)
}

/// A UTC time from RFC 3339 text, or a problem naming `field`.
pub(crate) fn parse_time(field: &str, text: &str, kind: problem::Kind) -> Result<NaiveDateTime, Problem> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc).naive_utc())
        .map_err(|_| {
            invalid(
                kind,
                format!("{field} must be an RFC 3339 time such as 2026-12-01T12:00:00Z"),
            )
        })
}

impl CreatePayment {
    /// Checks every field against the rules of PRODUCT §9 at `now` (UTC).
    fn check(&self, now: NaiveDateTime, default_ttl: i64) -> Result<Checked, Problem> {
        let order_id =
            OrderId::parse(&self.order_id).map_err(|error| invalid(problem::INVALID_REQUEST, error.to_string()))?;
        let amount = tronpay_domain::amount::parse_decimal(self.amount.0.trim())
            .map_err(|_| tronpay_domain::ExpectedAmountError::NotPositive)
            .and_then(|value| tronpay_domain::expected_amount(&value))
            .map_err(|error| {
                use tronpay_domain::ExpectedAmountError as E;
                invalid(
                    problem::INVALID_AMOUNT,
                    match error {
                        E::NotPositive => "amount must be a positive decimal string such as \"12.34\"",
                        E::TooSmall => "amount must be at least 0.01 USDT",
                        E::TooLarge => "amount cannot exceed 1,000,000 USDT",
                        E::TooPrecise => "amount cannot have more than 6 decimal places",
                    },
                )
            })?;
        let address = self
            .address
            .as_deref()
            .map(|text| {
                TronAddress::parse(text.trim())
                    .map_err(|error| invalid(problem::INVALID_ADDRESS, format!("address: {error}")))
            })
            .transpose()?;
        let expires_at = match (self.expires_in, &self.expires_at) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    problem::INVALID_REQUEST,
                    "give expires_in or expires_at, not both",
                ));
            }
            (Some(seconds), None) => {
                now.checked_add_signed(chrono::TimeDelta::try_seconds(seconds).unwrap_or(chrono::TimeDelta::MAX))
            }
            (None, Some(text)) => Some(parse_time("expires_at", text, problem::INVALID_REQUEST)?),
            (None, None) => now.checked_add_signed(chrono::TimeDelta::seconds(default_ttl)),
        };
        let lifetime = expires_at.map(|at| (at - now).num_seconds());
        let Some(expires_at) =
            expires_at.filter(|_| lifetime.is_some_and(|ttl| tronpay_domain::PAYMENT_TTL_RANGE.contains(&ttl)))
        else {
            return Err(invalid(
                problem::INVALID_REQUEST,
                format!(
                    "a payment expires between {} seconds and 366 days after it is created",
                    tronpay_domain::PAYMENT_TTL_RANGE.start()
                ),
            ));
        };
        let notify_url = self
            .notify_url
            .as_deref()
            .map(|text| {
                CallbackUrl::parse(text)
                    .map_err(|error| invalid(problem::INVALID_NOTIFY_URL, format!("notify_url: {error}")))
            })
            .transpose()?;
        let mut notify_events = Vec::new();
        for name in self.notify_events.iter().flatten() {
            let event = WebhookEvent::parse(name)
                .filter(|event| WebhookEvent::SUBSCRIBABLE.contains(event))
                .ok_or_else(|| {
                    invalid(
                        problem::INVALID_REQUEST,
                        format!(
                            "notify_events: {name:?} is not one of {}",
                            WebhookEvent::SUBSCRIBABLE.map(|event| event.as_str()).join(", ")
                        ),
                    )
                })?;
            if !notify_events.iter().any(|known: &String| known == event.as_str()) {
                notify_events.push(event.as_str().to_owned());
            }
        }
        if notify_url.is_none() && !notify_events.is_empty() {
            return Err(invalid(problem::INVALID_REQUEST, "notify_events needs a notify_url"));
        }
        if notify_url.is_some() && self.notify_events.is_none() {
            notify_events.push(WebhookEvent::Completed.as_str().to_owned());
        }
        let redirect_url = self.redirect_url.as_deref().map(check_redirect).transpose()?;
        if let Some(metadata) = &self.metadata {
            if !metadata.get().starts_with('{') {
                return Err(invalid(problem::INVALID_REQUEST, "metadata must be a JSON object"));
            }
            if metadata.get().len() > MAX_METADATA_BYTES {
                return Err(invalid(
                    problem::INVALID_REQUEST,
                    format!("metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"),
                ));
            }
        }
        Ok(Checked {
            order_id,
            amount,
            address,
            expires_at,
            notify_url,
            notify_events,
            redirect_url,
        })
    }
}

/// An http(s) URL for the buyer's browser (never `javascript:` or the like).
fn check_redirect(text: &str) -> Result<String, Problem> {
    let bad = || {
        invalid(
            problem::INVALID_REQUEST,
            format!("redirect_url must be an http(s) URL of at most {MAX_REDIRECT_URL_LEN} characters"),
        )
    };
    if text.len() > MAX_REDIRECT_URL_LEN {
        return Err(bad());
    }
    let url = url::Url::parse(text).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad());
    }
    Ok(url.to_string())
}

/// The `Idempotency-Key` header: `None` when absent.
fn idempotency_key(request: &HttpRequest) -> Result<Option<&str>, Problem> {
    let Some(value) = request.headers().get("Idempotency-Key") else {
        return Ok(None);
    };
    let bad = || {
        invalid(
            problem::INVALID_IDEMPOTENCY_KEY,
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    if text.is_empty() || text.len() > MAX_IDEMPOTENCY_KEY_LEN || !text.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(text))
}

/// The `created` log row's metadata: the original's fields and the key.
#[derive(Serialize)]
struct CreatedLogMetadata<'a> {
    wallet_address: &'a str,
    expected_amount_usdt: JsonAmount,
    order_id: &'a str,
    api_key: &'a str,
}

/// `now` cut to microseconds, the precision PostgreSQL keeps.
fn now_micros() -> NaiveDateTime {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).map_or(now.naive_utc(), |time| time.naive_utc())
}

pub(crate) fn resource(row: &PaymentRow) -> Result<PaymentResource<'_>, Problem> {
    row.resource()
        .map_err(|error| Problem::internal(anyhow::anyhow!("payment {} has an invalid amount: {error}", row.id)))
}

pub(crate) fn json(status: StatusCode, body: &impl Serialize) -> Result<HttpResponse, Problem> {
    let body = serde_json::to_string(body).map_err(Problem::internal)?;
    Ok(HttpResponse::build(status).content_type("application/json").body(body))
}

/// Creates a payment.
///
/// With an `Idempotency-Key`, the first response (status and body) is
/// replayed for 24 hours to the same key with the same body
/// (`Idempotent-Replayed: true`); another body is a 422. Concurrent
/// requests with one key make one payment. Only a created payment is
/// remembered: a request refused with a 4xx may be corrected and sent again
/// with the same key.
#[utoipa::path(
    post, path = "/v1/payments", tag = "payments", operation_id = "createPayment",
    request_body = CreatePayment,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: 1 to 255 visible ASCII characters, e.g. a UUID")),
    responses(
        (status = 201, description = "Created (or replayed)", body = PaymentResource,
            headers(("Location" = String, description = "The payment's URL"))),
        (status = 400, description = "Invalid request", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The order id has a pending payment, no unique amount is free on the shared address, or no pool address is free", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key used with another body", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:write"]))
)]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsWrite)?;
    let key = idempotency_key(&request)?;
    let body = read_body(&request, payload, state.settings.max_body_bytes).await?;
    let request_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
    let now = now_micros();
    let (create, checked) = match checked_request(&state, &body, now).await {
        Ok(checked) => checked,
        Err(problem) => {
            // A retry of a create that succeeded is answered as the first
            // time, even if it would not pass now (an `expires_at` that came
            // too close, a notify_url host that stopped resolving).
            if let Some(key) = key {
                let mut conn = state.pool.get().await?;
                let stored = tronpay_db::idempotency::stored(&mut conn, caller.key_id, key).await?;
                drop(conn);
                if let Some(stored) = stored.filter(|stored| !stored.expired(now)) {
                    return replay(&stored, &request_hash);
                }
            }
            return Err(problem);
        }
    };

    let id = PaymentId::generate();
    let step;
    let (address, mut choice) = match (&checked.address, &state.receiving) {
        (Some(address), _) => (address.to_base58(), AddressChoice::Given),
        (None, Receiving::Xpub(account)) => (
            ADDRESS_PLACEHOLDER.to_owned(),
            AddressChoice::Derived {
                account: account.id(),
                floor: state.address_floor.load(std::sync::atomic::Ordering::Relaxed),
            },
        ),
        (None, Receiving::Pool) => (ADDRESS_PLACEHOLDER.to_owned(), AddressChoice::Pool),
        (
            None,
            Receiving::UniqueAmount {
                address,
                step: by,
                steps,
            },
        ) => {
            step = by.to_decimal();
            (
                address.to_base58(),
                AddressChoice::UniqueAmount {
                    step: &step,
                    steps: *steps,
                },
            )
        }
        (None, Receiving::Given) => {
            return Err(invalid(
                problem::INVALID_REQUEST,
                "address is required: this tronpay assigns no addresses (ADDRESS_MODE=given)",
            ));
        }
    };
    let mut row = PaymentRow {
        checkout_url: Some(format!("{}/pay/{id}", state.public_base_url)),
        id,
        wallet_address: address,
        expected_amount_usdt: checked.amount.to_decimal(),
        callback_url: checked
            .notify_url
            .as_ref()
            .map(|url| url.as_str().to_owned())
            .unwrap_or_default(),
        order_id: checked.order_id.as_str().to_owned(),
        status: DbStatus(PaymentStatus::Pending),
        transaction_hash: None,
        received_amount_usdt: None,
        created_at: now,
        completed_at: None,
        last_checked_timestamp: now.and_utc().timestamp_millis(),
        callback_attempts: 0,
        last_callback_attempt: None,
        callback_success: false,
        expires_at: checked.expires_at,
        notify_events: checked.notify_events,
        api_version: 1,
        redirect_url: checked.redirect_url,
        metadata_json: create.metadata.as_ref().map(|raw| raw.get().to_owned()),
        amount_to_pay: None,
    };
    let log_message = format!(
        "Payment watch created for {} expecting {} USDT",
        row.wallet_address, checked.amount
    );
    let log_metadata = serde_json::to_string(&CreatedLogMetadata {
        wallet_address: &row.wallet_address,
        expected_amount_usdt: JsonAmount(checked.amount),
        order_id: &row.order_id,
        api_key: &caller.prefix,
    })
    .map_err(Problem::internal)?;
    let record = key.map(|key| NewRecord {
        api_key_id: caller.key_id,
        key,
        request_hash: &request_hash,
    });

    let mut conn = state.pool.get().await?;
    let mut created = CreatedV1::NoFreeAddress;
    for _ in 0..2 {
        created = payments::create_v1(&mut conn, &row, (&log_message, &log_metadata), record.as_ref(), choice)
            .await
            .map_err(|error| match error {
                CreateError::DuplicatePendingOrder => invalid(
                    problem::ORDER_ID_PENDING,
                    format!("order_id {} already has a pending payment", row.order_id),
                ),
                CreateError::Db(error) => error.into(),
            })?;
        match (&created, &state.receiving) {
            // Derive the next batch of the account's addresses (one task at
            // a time; the others find them), then again.
            (CreatedV1::NoFreeAddress, Receiving::Xpub(account)) => {
                let _one_at_a_time = state.refilling.lock().await;
                let floor = refill(&state, &mut conn, account).await?;
                if let AddressChoice::Derived { account, .. } = choice {
                    choice = AddressChoice::Derived { account, floor };
                }
            }
            _ => break,
        }
    }
    drop(conn);
    if let Receiving::Xpub(account) = &state.receiving {
        top_up(&state, account);
    }
    let location = format!("/v1/payments/{}", row.id);
    match created {
        CreatedV1::NoFreeAddress if matches!(state.receiving, Receiving::Pool) => Err(invalid(
            problem::POOL_EMPTY,
            "no address of the pool is free: every imported address is lent to a pending payment or resting for \
             POOL_RELEASE_GRACE_SECONDS after its payment ended; import more with `tronpay addresses import`, or \
             retry later",
        )),
        CreatedV1::NoFreeAddress => Err(Problem::internal(anyhow::anyhow!(
            "no derived address is free after a refill"
        ))),
        CreatedV1::NoFreeAmount => Err(invalid(
            problem::NO_FREE_AMOUNT,
            format!(
                "every amount from {} USDT up to UNIQUE_AMOUNT_MAX_OFFSET more is held on the shared address by a \
                 payment that is pending or ended less than UNIQUE_AMOUNT_RELEASE_GRACE_SECONDS ago; try again later \
                 or ask for a different amount",
                checked.amount
            ),
        )),
        CreatedV1::Created { address, amount_to_pay } => {
            crate::metrics::created(match choice {
                AddressChoice::Given => "given",
                AddressChoice::Derived { .. } => "xpub",
                AddressChoice::Pool => "pool",
                AddressChoice::UniqueAmount { .. } => "unique_amount",
            });
            row.wallet_address = address;
            row.amount_to_pay = amount_to_pay;
            let response = serde_json::to_string(&resource(&row)?).map_err(Problem::internal)?;
            tracing::info!(
                payment_id = %row.id,
                wallet_address = %row.wallet_address,
                amount = %checked.amount,
                order_id = %row.order_id,
                api_key = %caller.prefix,
                "payment created"
            );
            Ok(HttpResponse::Created()
                .insert_header(("Location", location))
                .content_type("application/json")
                .body(response))
        }
        CreatedV1::KeyUsed(stored) => replay(&stored, &request_hash),
    }
}

/// Creates between two looks at how many derived addresses are free.
const TOP_UP_EVERY: u64 = 50;

/// Every [`TOP_UP_EVERY`] creates, derives more addresses in the background
/// when few are free, so creates rarely wait for a derivation.
fn top_up(state: &web::Data<AppState>, account: &tronpay_domain::xpub::AccountXpub) {
    use std::sync::atomic::Ordering;
    if !state
        .creates_since_refill
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(TOP_UP_EVERY)
    {
        return;
    }
    let (state, account) = (state.clone(), account.clone());
    tokio::spawn(async move {
        let Ok(_one_at_a_time) = state.refilling.try_lock() else {
            return;
        };
        let outcome = async {
            let mut conn = state.pool.get().await?;
            refill(&state, &mut conn, &account).await
        };
        if let Err(error) = outcome.await {
            tracing::warn!(%error, "deriving more receiving addresses failed");
        }
    });
}

/// Derives more of `account`'s addresses when few are free
/// ([`tronpay_db::receiving::refill`]), then moves this replica's search
/// floor to the first free one and returns it: a create that gave an address
/// back left it below the floor, and it is the next one handed out. The
/// caller holds `state.refilling`.
async fn refill(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    account: &tronpay_domain::xpub::AccountXpub,
) -> Result<i32, tronpay_db::DbError> {
    tronpay_db::receiving::refill(conn, account).await?;
    let floor = tronpay_db::receiving::first_free(conn, account).await?;
    state.address_floor.store(floor, std::sync::atomic::Ordering::Relaxed);
    Ok(floor)
}

/// The body parsed and checked, and its notify URL's host allowed.
async fn checked_request(
    state: &AppState,
    body: &[u8],
    now: NaiveDateTime,
) -> Result<(CreatePayment, Checked), Problem> {
    let create: CreatePayment = serde_json::from_slice(body).map_err(|error| {
        invalid(
            problem::INVALID_JSON,
            format!("the body is not a valid payment request: {error}"),
        )
    })?;
    let checked = create.check(now, state.settings.payment_ttl_seconds)?;
    if let Some(url) = &checked.notify_url {
        state
            .callback_guard
            .check(url)
            .await
            .map_err(|refused| invalid(problem::INVALID_NOTIFY_URL, format!("notify_url: {refused}")))?;
    }
    Ok((create, checked))
}

/// The answer to a request whose `Idempotency-Key` made a payment: the
/// first answer again (the payment as it was created) for the same body
/// (`request_hash`), a 422 for another.
fn replay(stored: &Stored, request_hash: &str) -> Result<HttpResponse, Problem> {
    if stored.request_hash != request_hash {
        return Err(invalid(
            problem::IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used with a different body in the last 24 hours",
        ));
    }
    let first = as_created(&stored.payment);
    let body = serde_json::to_string(&resource(&first)?).map_err(Problem::internal)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/payments/{}", first.id)))
        .insert_header(("Idempotent-Replayed", "true"))
        .content_type("application/json")
        .body(body))
}

/// A payment as its create answered: before any transfer, cancel or
/// expiry touched it (only these columns change after creation).
fn as_created(row: &PaymentRow) -> PaymentRow {
    PaymentRow {
        status: DbStatus(PaymentStatus::Pending),
        received_amount_usdt: None,
        transaction_hash: None,
        completed_at: None,
        ..row.clone()
    }
}

/// A payment id from the path; one that cannot exist is a 404.
pub(crate) fn payment_id(text: &str) -> Result<PaymentId, Problem> {
    PaymentId::parse(text).map_err(|_| not_found(text))
}

pub(crate) fn not_found(id: &str) -> Problem {
    let shown: String = id.chars().take(40).collect();
    invalid(problem::NOT_FOUND, format!("no payment {shown:?}"))
}

/// The payment `id`, or a 404.
pub(crate) async fn load(state: &AppState, id: &str) -> Result<PaymentRow, Problem> {
    let id = payment_id(id)?;
    let mut conn = state.pool.get().await?;
    let row = payments::find(&mut conn, id.as_str()).await?;
    row.ok_or_else(|| not_found(id.as_str()))
}

/// Reads a payment.
#[utoipa::path(
    get, path = "/v1/payments/{id}", tag = "payments", operation_id = "getPayment",
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "The payment", body = PaymentResource),
        (status = 404, description = "No such payment", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:read"]))
)]
pub async fn get(caller: Caller, state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsRead)?;
    let row = load(&state, &path).await?;
    json(StatusCode::OK, &resource(&row)?)
}

/// Filters and page of `GET /v1/payments`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `completed`, `expired` or `failed`.
    pub status: Option<String>,
    pub order_id: Option<String>,
    /// The receiving address (Base58Check).
    pub address: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub created_from: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub created_to: Option<String>,
    /// 1 to 200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of payments.
#[derive(Serialize, ToSchema)]
pub struct PaymentPage<'a> {
    /// Newest first.
    #[schema(value_type = Vec<PaymentResource>)]
    pub data: Vec<PaymentResource<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A list's `limit`: [`DEFAULT_LIMIT`] when absent, else 1 to
/// [`MAX_LIMIT`] or a 400.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, Problem> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(invalid(
            problem::INVALID_QUERY,
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

/// Cuts rows read with `limit + 1` down to `limit`; whether there were more
/// (so a next page exists).
pub(crate) fn cut_page<T>(rows: &mut Vec<T>, limit: i64) -> bool {
    let page = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > page;
    rows.truncate(page);
    more
}

/// An `address` query filter: a valid TRON address, else 400.
pub(crate) fn address_filter(text: &str) -> Result<String, Problem> {
    TronAddress::parse(text.trim())
        .map(|address| address.to_base58())
        .map_err(|error| invalid(problem::INVALID_QUERY, format!("address: {error}")))
}

/// A page position: the last row's `(created_at, id)`, opaque to clients.
pub(crate) mod cursor {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::{DateTime, NaiveDateTime};

    pub fn encode(created_at: NaiveDateTime, id: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}:{id}", created_at.and_utc().timestamp_micros()))
    }

    pub fn decode(text: &str) -> Option<(NaiveDateTime, String)> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once(':')?;
        let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?.naive_utc();
        // Only times PostgreSQL and this API can have written.
        if !(1970..=9999).contains(&chrono::Datelike::year(&created_at)) {
            return None;
        }
        tronpay_domain::PaymentId::parse(id).ok()?;
        Some((created_at, id.to_owned()))
    }
}

/// Lists payments, newest first, a page at a time.
///
/// Paging is stable while payments are created: each page continues after
/// the last row of the one before, so no row shows twice and none that
/// existed when paging began is missed.
#[utoipa::path(
    get, path = "/v1/payments", tag = "payments", operation_id = "listPayments",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of payments", body = PaymentPage),
        (status = 400, description = "Invalid filter or cursor", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:read"]))
)]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsRead)?;
    let query = query.into_inner();
    let bad = |detail: String| invalid(problem::INVALID_QUERY, detail);
    let limit = page_limit(query.limit)?;
    let filter = ListFilter {
        status: query
            .status
            .as_deref()
            .map(|text| {
                text.parse::<PaymentStatus>()
                    .map_err(|_| bad("status must be pending, completed, expired or failed".into()))
            })
            .transpose()?,
        order_id: query
            .order_id
            .as_deref()
            .map(|text| {
                OrderId::parse(text)
                    .map(|order_id| order_id.as_str().to_owned())
                    .map_err(|error| bad(format!("order_id: {error}")))
            })
            .transpose()?,
        address: query.address.as_deref().map(address_filter).transpose()?,
        created_from: query
            .created_from
            .as_deref()
            .map(|text| parse_time("created_from", text, problem::INVALID_QUERY))
            .transpose()?,
        created_to: query
            .created_to
            .as_deref()
            .map(|text| parse_time("created_to", text, problem::INVALID_QUERY))
            .transpose()?,
        transaction: None,
    };
    let after = query
        .cursor
        .as_deref()
        .map(|text| {
            cursor::decode(text).ok_or_else(|| invalid(problem::INVALID_CURSOR, "cursor is not one this API issued"))
        })
        .transpose()?;
    let mut conn = state.pool.get().await?;
    let mut rows = payments::list(&mut conn, &filter, after, limit + 1).await?;
    drop(conn);
    let more = cut_page(&mut rows, limit);
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|row| cursor::encode(row.created_at, row.id.as_str()));
    let data = rows.iter().map(resource).collect::<Result<Vec<_>, _>>()?;
    json(StatusCode::OK, &PaymentPage { data, next_cursor })
}

/// `POST /v1/payments/{id}/cancel` (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelPayment {
    /// Why, for the audit trail (at most 500 characters).
    pub reason: Option<String>,
}

/// Cancels a pending payment: its status becomes `failed`, the reason goes
/// to its audit trail, and `payment.cancelled` is sent if it asked for it.
///
/// A cancel and a completing transfer are serialised on the payment's
/// address: exactly one wins; a cancel that loses gets 409 `not_pending`.
#[utoipa::path(
    post, path = "/v1/payments/{id}/cancel", tag = "payments", operation_id = "cancelPayment",
    params(("id" = String, Path, description = "The payment id")),
    request_body(content = Option<CancelPayment>, description = "Optional"),
    responses(
        (status = 200, description = "Cancelled", body = PaymentResource),
        (status = 400, description = "Invalid body", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such payment", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "Not pending", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:write"]))
)]
pub async fn cancel(
    caller: Caller,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsWrite)?;
    let body = read_body(&request, payload, state.settings.max_body_bytes).await?;
    // No body, or JSON `null`: no reason.
    let cancel: CancelPayment = if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        CancelPayment::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            invalid(
                problem::INVALID_JSON,
                format!("the body is not a valid cancel request: {error}"),
            )
        })?
    };
    let reason = cancel.reason.unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return Err(invalid(
            problem::INVALID_REQUEST,
            format!("reason must be at most {MAX_REASON_CHARS} characters without control characters"),
        ));
    }
    let payment = load(&state, &path).await?;
    let by = Actor::ApiKey(&caller.prefix);
    let outcome = cancel_payment(&state, &payment, by, &reason).await?;
    let Some(cancelled) = outcome else {
        let current = load(&state, payment.id.as_str()).await?;
        return Err(invalid(
            problem::NOT_PENDING,
            format!("payment {} is {}, not pending", current.id, current.status()),
        ));
    };
    tracing::info!(payment_id = %cancelled.id, api_key = %caller.prefix, "payment cancelled");
    json(StatusCode::OK, &resource(&cancelled)?)
}

/// Who changed a payment by hand (a cancel, an assigned transfer), for its
/// audit trail.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Actor<'a> {
    /// An API key, by its prefix.
    ApiKey(&'a str),
    /// An operator of the dashboard, by name.
    Operator(&'a str),
}

/// Cancels `payment` if it is still pending, in one transaction with its
/// audit-trail row (naming `by` and `reason`) and its `payment.cancelled`
/// webhook; `None` when it is not pending (any more). The API's cancel and
/// the dashboard's both come here.
pub(crate) async fn cancel_payment(
    state: &AppState,
    payment: &PaymentRow,
    by: Actor<'_>,
    reason: &str,
) -> Result<Option<PaymentRow>, tronpay_db::DbError> {
    let (who, actor) = match by {
        Actor::ApiKey(prefix) => (
            format!("with API key {prefix}"),
            serde_json::json!({ "api_key": prefix }),
        ),
        Actor::Operator(name) => (format!("by operator {name}"), serde_json::json!({ "operator": name })),
    };
    let mut conn = state.pool.get().await?;
    let cancelled = diesel_async::AsyncConnection::transaction::<_, tronpay_db::DbError, _>(&mut conn, async |conn| {
        // The lock matching takes: a completing transfer and this cancel
        // do not interleave.
        matching::lock_address(conn, &payment.wallet_address).await?;
        let Some(cancelled) = payments::cancel(conn, &payment.id).await? else {
            return Ok(None);
        };
        let message = if reason.is_empty() {
            format!("Payment cancelled {who}")
        } else {
            format!("Payment cancelled {who}: {reason}")
        };
        let mut metadata = actor.clone();
        metadata["reason"] = serde_json::Value::from(reason);
        logs::insert(
            conn,
            &cancelled.id,
            LogEvent::Cancelled,
            &message,
            Some(&metadata.to_string()),
        )
        .await?;
        if cancelled.wants(WebhookEvent::Cancelled) {
            webhooks::enqueue(conn, &cancelled, WebhookEvent::Cancelled, None).await?;
        }
        Ok(Some(cancelled))
    })
    .await;
    if matches!(cancelled, Ok(Some(_))) {
        crate::metrics::cancelled();
    }
    cancelled
}

/// One row of a payment's audit trail.
#[derive(Serialize, ToSchema)]
pub struct PaymentEvent<'a> {
    pub id: i32,
    /// What happened (`created`, `detected`, `partial`, `completed`,
    /// `overpaid`, `expired`, `cancelled`, `assigned`, `late`,
    /// `callback_sent`, …).
    pub event: &'a str,
    pub message: Option<&'a str>,
    /// Details (amounts exact, as in the log row).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<&'a serde_json::Value>,
    pub created_at: Rfc3339,
}

/// A payment's audit trail.
#[derive(Serialize, ToSchema)]
pub struct PaymentEvents<'a> {
    /// Oldest first.
    #[schema(value_type = Vec<PaymentEvent>)]
    pub data: Vec<PaymentEvent<'a>>,
}

/// The audit trail (`payment_logs`) of a payment, oldest first.
#[utoipa::path(
    get, path = "/v1/payments/{id}/events", tag = "payments", operation_id = "listPaymentEvents",
    params(("id" = String, Path, description = "The payment id")),
    responses(
        (status = 200, description = "The audit trail", body = PaymentEvents),
        (status = 404, description = "No such payment", body = ProblemBody, content_type = "application/problem+json"),
    ),
    security(("api_key" = ["payments:read"]))
)]
pub async fn events(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    caller.require(Scope::PaymentsRead)?;
    let payment = load(&state, &path).await?;
    let mut conn = state.pool.get().await?;
    let rows = logs::for_payment(&mut conn, &payment.id).await?;
    drop(conn);
    let data = rows
        .iter()
        .map(|row| PaymentEvent {
            id: row.id,
            event: &row.event_type,
            message: row.message.as_deref(),
            metadata: row.metadata.as_ref(),
            created_at: Rfc3339::from_naive(row.created_at),
        })
        .collect();
    json(StatusCode::OK, &PaymentEvents { data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_764_540_000_123_456)
            .unwrap()
            .naive_utc();
        let text = cursor::encode(at, "3f1e0c9a-0000-4000-8000-000000000001");
        assert_eq!(
            cursor::decode(&text),
            Some((at, "3f1e0c9a-0000-4000-8000-000000000001".to_owned()))
        );
        let ancient = cursor::encode(
            DateTime::from_timestamp_micros(-300_000_000_000_000_000)
                .unwrap()
                .naive_utc(),
            "3f1e0c9a-0000-4000-8000-000000000001",
        );
        for bad in ["", "!!", "bm90IGEgY3Vyc29y", "MTIzOg", &ancient] {
            assert_eq!(cursor::decode(bad), None, "{bad}");
        }
    }

    fn check(body: &str) -> Result<Checked, Problem> {
        let request: CreatePayment =
            serde_json::from_str(body).map_err(|error| invalid(problem::INVALID_JSON, error.to_string()))?;
        request.check(now_micros(), 3600)
    }

    fn code(body: &str) -> &'static str {
        check(body).err().map_or("ok", |problem| problem.kind.code)
    }

    #[test]
    fn amounts_are_decimal_strings_with_six_decimals_at_most() {
        let base = r#""order_id":"o","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t""#;
        assert_eq!(
            check(&format!(r#"{{{base},"amount":"12.340000"}}"#))
                .unwrap()
                .amount
                .base_units(),
            12_340_000
        );
        assert_eq!(code(&format!(r#"{{{base},"amount":12.34}}"#)), "invalid_json");
        assert_eq!(code(&format!(r#"{{{base},"amount":"12.3456789"}}"#)), "invalid_amount");
        assert_eq!(code(&format!(r#"{{{base},"amount":"-1"}}"#)), "invalid_amount");
        assert_eq!(code(&format!(r#"{{{base},"amount":"1e400"}}"#)), "invalid_amount");
        assert_eq!(code(&format!(r#"{{{base},"amount":"abc"}}"#)), "invalid_amount");
    }

    #[test]
    fn fields_are_checked() {
        let ok = r#""order_id":"o","amount":"1","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t""#;
        assert_eq!(code(&format!("{{{ok}}}")), "ok");
        assert_eq!(
            code(r#"{"order_id":"o","amount":"1","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u"}"#),
            "invalid_address"
        );
        assert_eq!(
            code(r#"{"order_id":"o","address":"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"}"#),
            "invalid_json"
        );
        assert!(check(r#"{"order_id":"o","amount":"1"}"#).unwrap().address.is_none());
        assert_eq!(code(&format!(r#"{{{ok},"surprise":1}}"#)), "invalid_json");
        assert_eq!(code(&format!(r#"{{{ok},"expires_in":59}}"#)), "invalid_request");
        assert_eq!(
            code(&format!(
                r#"{{{ok},"expires_in":60,"expires_at":"2030-01-01T00:00:00Z"}}"#
            )),
            "invalid_request"
        );
        assert_eq!(
            code(&format!(r#"{{{ok},"notify_events":["payment.completed"]}}"#)),
            "invalid_request"
        );
        assert_eq!(
            code(&format!(
                r#"{{{ok},"notify_url":"https://shop.example.com/h","notify_events":["ping"]}}"#
            )),
            "invalid_request"
        );
        assert_eq!(
            code(&format!(r#"{{{ok},"notify_url":"ftp://shop.example.com/h"}}"#)),
            "invalid_notify_url"
        );
        assert_eq!(
            code(&format!(r#"{{{ok},"redirect_url":"javascript:alert(1)"}}"#)),
            "invalid_request"
        );
        assert_eq!(code(&format!(r#"{{{ok},"metadata":[1]}}"#)), "invalid_request");
        let big = format!(r#"{{"k":"{}"}}"#, "x".repeat(MAX_METADATA_BYTES));
        assert_eq!(code(&format!(r#"{{{ok},"metadata":{big}}}"#)), "invalid_request");
        let checked = check(&format!(r#"{{{ok},"notify_url":"https://shop.example.com/h"}}"#)).unwrap();
        assert_eq!(checked.notify_events, ["payment.completed"]);
    }
}
