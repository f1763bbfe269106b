//! The operator dashboard (PRODUCT §11), `/admin`: sign-in and sign-out,
//! sessions and CSRF tokens, the overview, the payments pages (search, a
//! payment's page, cancel, send a delivery again) and the transfers page
//! (assign); the webhooks, API keys and settings pages are in
//! [`operations`]. Its writes go through the same functions as the API's and
//! CLI's, name the operator in the payment's audit trail, and are listed in
//! `operator_actions` (the overview shows the latest).
//!
//! Sessions live in PostgreSQL (`operator_sessions`, keyed by the SHA-256 of
//! the cookie's random token), so any API replica serves any operator. The
//! cookie is `HttpOnly`, `SameSite=Strict`, limited to `/admin`, and `Secure`
//! when the request came over TLS; a session lasts [`SESSION_HOURS`]. Every
//! form carries the session's CSRF token (the sign-in form a token of its
//! own, doubled in a short-lived cookie), compared in constant time; a POST
//! without it is refused with 403. Failed sign-ins are recorded in the
//! database: after [`MAX_FAILURES_PER_NAME`] for a name or
//! [`MAX_FAILURES_PER_IP`] from an address within [`FAILURE_WINDOW_MINUTES`],
//! sign-in is refused (429) on every replica until they age out.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tronpay_db::operators::{self, Session};
use tronpay_domain::operator;

pub mod operations;

use crate::checkout::{Lang, Messages, html as page};
use crate::edge::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "tronpay_session";
/// The sign-in form's CSRF cookie (double submit, before a session exists).
pub const SIGN_IN_COOKIE: &str = "tronpay_sign_in";
/// How long a session lasts.
pub const SESSION_HOURS: i64 = 8;
/// Failed sign-ins counted over this many minutes …
pub const FAILURE_WINDOW_MINUTES: i64 = 15;
/// … at most this many for one name …
pub const MAX_FAILURES_PER_NAME: i64 = 5;
/// … and this many from one client address.
pub const MAX_FAILURES_PER_IP: i64 = 20;

/// An argon2id hash of a random password nobody knows: a sign-in as an
/// unknown name is checked against it, so it takes as long as a wrong
/// password (the answer does not tell which names exist).
static DECOY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    operator::random_token()
        .and_then(|password| operator::hash_password(&password))
        .unwrap_or_default()
});

/// `templates/admin_sign_in.html`.
#[derive(Template)]
#[template(path = "admin_sign_in.html")]
struct SignInPage<'a> {
    t: &'static Messages,
    csrf: &'a str,
    name: &'a str,
    problem: Option<&'a str>,
}

/// The chain as the overview shows it.
struct ChainView {
    head: String,
    last_final: String,
    cursor: i64,
    lag: String,
    last_error: String,
}

/// `templates/admin_overview.html`.
#[derive(Template)]
#[template(path = "admin_overview.html")]
struct OverviewPage<'a> {
    t: &'static Messages,
    operator: &'a str,
    csrf: &'a str,
    counts: tronpay_db::stats::StatusCounts,
    chain: Option<ChainView>,
    deliveries: Vec<(String, i64)>,
    /// Deliveries pending or being sent.
    backlog: i64,
    /// Deliveries dead or failed (of the [`operations::webhooks`] page).
    dead: i64,
    chart: VolumeChart,
    /// When (UTC), who, what, to what.
    actions: Vec<(String, String, String, String)>,
}

/// Height of the volume chart's drawing area, in SVG units.
const CHART_HEIGHT: i64 = 160;
/// Width of one day's bar, gap included, in SVG units.
const CHART_STEP: i64 = 20;
/// Days the volume chart shows, today included.
const CHART_DAYS: i64 = 30;

/// One day of the volume chart: its bar (SVG units) and its figures.
struct VolumeBar {
    day: String,
    /// USDT received by the completed payments created that day (exact).
    volume: String,
    completed: i64,
    x: i64,
    y: i64,
    height: i64,
}

/// The overview's chart: completed volume per day for [`CHART_DAYS`] days.
struct VolumeChart {
    bars: Vec<VolumeBar>,
    /// The largest day's volume (the chart's scale).
    max: String,
    total: String,
    width: i64,
}

impl VolumeChart {
    /// The chart of `rows` (per-day, per-status buckets from
    /// `stats::payments_by_interval`) for the [`CHART_DAYS`] days ending on
    /// `today`. Each bar's height is its day's share of the largest day,
    /// computed in exact decimals and rounded to whole SVG units (a day
    /// with any volume gets at least 2).
    fn of(rows: &[tronpay_db::stats::BucketRow], today: chrono::NaiveDate) -> Self {
        use bigdecimal::{BigDecimal, ToPrimitive as _, Zero as _};
        let first = today - chrono::Duration::days(CHART_DAYS - 1);
        let mut days: Vec<(chrono::NaiveDate, BigDecimal, i64)> = (0..CHART_DAYS)
            .map(|offset| (first + chrono::Duration::days(offset), BigDecimal::zero(), 0))
            .collect();
        for row in rows.iter().filter(|row| row.status == "completed") {
            let offset = (row.bucket.date() - first).num_days();
            if let Some(day) = usize::try_from(offset).ok().and_then(|offset| days.get_mut(offset)) {
                day.1 += &row.received;
                day.2 += row.count;
            }
        }
        let max = days.iter().map(|day| day.1.clone()).max().unwrap_or_default();
        let total: BigDecimal = days.iter().map(|day| &day.1).sum();
        let bars = days
            .into_iter()
            .zip(0..)
            .map(|((day, volume, completed), index)| {
                let height = if max.is_zero() {
                    0
                } else {
                    (&volume * BigDecimal::from(CHART_HEIGHT) / &max)
                        .round(0)
                        .to_i64()
                        .unwrap_or(0)
                };
                // A day with any volume gets at least a visible sliver.
                let height = if volume.is_zero() { 0 } else { height.max(2) };
                VolumeBar {
                    day: day.format("%Y-%m-%d").to_string(),
                    volume: volume.normalized().to_string(),
                    completed,
                    x: index * CHART_STEP + 2,
                    y: CHART_HEIGHT - height,
                    height,
                }
            })
            .collect();
        Self {
            bars,
            max: max.normalized().to_string(),
            total: total.normalized().to_string(),
            width: CHART_DAYS * CHART_STEP,
        }
    }
}

/// `(NAME, value)` rows of a settings struct, by environment name and in
/// field order, for the settings page: what its `Serialize` gives (which
/// redacts passwords in URLs); lists and objects as JSON, unset as `(not
/// set)`.
pub fn settings_rows<T: serde::Serialize>(settings: &T) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(settings) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .map(|(name, value)| {
            let shown = match value {
                serde_json::Value::Null => "(not set)".to_owned(),
                serde_json::Value::String(text) if text.is_empty() => "(empty)".to_owned(),
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            (name.to_ascii_uppercase(), shown)
        })
        .collect()
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct SignInForm {
    name: String,
    password: String,
    csrf: String,
}

/// A form with only the CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// Whether `presented` equals `expected`, in constant time.
fn same_token(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// The session of `request`'s cookie, if it is signed in.
pub async fn session(state: &AppState, request: &HttpRequest) -> Result<Option<Session>, ApiError> {
    let Some(cookie) = request.cookie(SESSION_COOKIE) else {
        return Ok(None);
    };
    let mut conn = state.pool.get().await?;
    Ok(operators::session(&mut conn, &operator::token_hash(cookie.value())).await?)
}

/// A cookie for `/admin` with `value`, `max_age` seconds (0 deletes it).
fn cookie(request: &HttpRequest, name: &str, value: &str, max_age: i64) -> String {
    let secure = if request.connection_info().scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// A 303 to `location` (after a form post, or to the sign-in).
fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::SeeOther();
    response.insert_header((header::LOCATION, location.to_owned()));
    response
}

/// The sign-in form, with a fresh CSRF token in the form and its cookie.
fn sign_in_form(
    request: &HttpRequest,
    status: StatusCode,
    name: &str,
    problem: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let csrf = operator::random_token().map_err(|error| ApiError::Internal(error.into()))?;
    let rendered = SignInPage {
        t: Lang::En.messages()?,
        csrf: &csrf,
        name,
        problem,
    }
    .render();
    let mut response = page(status, rendered)?;
    let value = HeaderValue::from_str(&cookie(request, SIGN_IN_COOKIE, &csrf, 1800))
        .map_err(|error| ApiError::Internal(error.into()))?;
    response.headers_mut().append(header::SET_COOKIE, value);
    Ok(response)
}

/// `GET /admin/sign-in`.
pub async fn sign_in_page(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    if session(&state, &request).await?.is_some() {
        return Ok(see_other("/admin").finish());
    }
    sign_in_form(&request, StatusCode::OK, "", None)
}

/// `POST /admin/sign-in`: a session cookie and a redirect to `/admin`; the
/// form again with a reason (401 wrong name or password, 403 CSRF, 429 too
/// many failures).
pub async fn sign_in(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, ApiError> {
    let expected = request.cookie(SIGN_IN_COOKIE).map(|cookie| cookie.value().to_owned());
    if !expected.is_some_and(|expected| same_token(&form.csrf, &expected)) {
        return sign_in_form(
            &request,
            StatusCode::FORBIDDEN,
            &form.name,
            Some("The form expired or did not come from this page; please sign in again."),
        );
    }
    let client_ip = request
        .extensions()
        .get::<RequestContext>()
        .map_or_else(|| "unknown".to_owned(), |context| context.client_ip.to_string());
    let name: String = form.name.trim().chars().take(64).collect();
    let now = chrono::Utc::now().naive_utc();
    let mut conn = state.pool.get().await?;
    let since = now - chrono::Duration::minutes(FAILURE_WINDOW_MINUTES);
    let (by_name, by_ip) = operators::recent_failures(&mut conn, &name, &client_ip, since).await?;
    if by_name >= MAX_FAILURES_PER_NAME || by_ip >= MAX_FAILURES_PER_IP {
        tracing::warn!(operator = ?name, %client_ip, "sign-in refused: too many failures");
        return sign_in_form(
            &request,
            StatusCode::TOO_MANY_REQUESTS,
            &name,
            Some("Too many failed sign-ins: wait 15 minutes and try again."),
        );
    }
    let found = operators::find(&mut conn, &name).await?;
    let hash = found
        .as_ref()
        .map_or_else(|| DECOY_HASH.clone(), |row| row.password_hash.clone());
    let password = form.password.clone();
    // argon2 takes tens of milliseconds of CPU: off the async threads, and
    // without holding a database connection.
    drop(conn);
    let matches = web::block(move || operator::verify_password(&password, &hash))
        .await
        .map_err(|error| ApiError::Internal(error.into()))?;
    let mut conn = state.pool.get().await?;
    let Some(row) = found.filter(|_| matches) else {
        operators::record_failure(&mut conn, &name, &client_ip).await?;
        tracing::warn!(operator = ?name, %client_ip, "sign-in failed");
        return sign_in_form(
            &request,
            StatusCode::UNAUTHORIZED,
            &name,
            Some("Wrong name or password."),
        );
    };
    let token = operator::random_token().map_err(|error| ApiError::Internal(error.into()))?;
    let csrf = operator::random_token().map_err(|error| ApiError::Internal(error.into()))?;
    let expires_at = now + chrono::Duration::hours(SESSION_HOURS);
    operators::start_session(&mut conn, row.id, &operator::token_hash(&token), &csrf, expires_at).await?;
    tracing::info!(operator = %row.name, %client_ip, "operator signed in");
    Ok(see_other("/admin")
        .append_header((
            header::SET_COOKIE,
            cookie(&request, SESSION_COOKIE, &token, SESSION_HOURS * 3600),
        ))
        .append_header((header::SET_COOKIE, cookie(&request, SIGN_IN_COOKIE, "", 0)))
        .finish())
}

/// `POST /admin/sign-out` (CSRF token required): ends the session.
pub async fn sign_out(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    let session = match posted(&state, &request, &form.csrf).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    if let Some(cookie) = request.cookie(SESSION_COOKIE) {
        let mut conn = state.pool.get().await?;
        operators::end_session(&mut conn, &operator::token_hash(cookie.value())).await?;
    }
    tracing::info!(operator = %session.operator, "operator signed out");
    Ok(see_other("/admin/sign-in")
        .append_header((header::SET_COOKIE, cookie(&request, SESSION_COOKIE, "", 0)))
        .finish())
}

/// `GET /admin`: the overview — payments by status, the completed volume
/// per day for 30 days (an SVG chart), the chain, the webhook backlog and
/// the dead deliveries, deliveries of the last 30 days by status, the 20
/// latest operator actions. Not signed in: a redirect to the sign-in.
pub async fn overview(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let session = match signed_in(&state, &request).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let now = chrono::Utc::now().naive_utc();
    let mut conn = state.pool.get().await?;
    let counts = tronpay_db::stats::status_counts(&mut conn).await?;
    let chain = tronpay_db::chain::state(&mut conn).await?;
    let deliveries = tronpay_db::stats::deliveries_by_status(&mut conn, now - chrono::Duration::days(30), now).await?;
    let backlog = tronpay_db::deliveries::backlog(&mut conn).await?;
    let dead = tronpay_db::deliveries::unsuccessful_count(&mut conn).await?;
    let today = now.date();
    let first_day = (today - chrono::Duration::days(CHART_DAYS - 1)).and_time(chrono::NaiveTime::MIN);
    let tomorrow = (today + chrono::Duration::days(1)).and_time(chrono::NaiveTime::MIN);
    let buckets =
        tronpay_db::stats::payments_by_interval(&mut conn, first_day, tomorrow, tronpay_db::stats::Interval::Day)
            .await?;
    let actions = operators::recent_actions(&mut conn, 20).await?;
    drop(conn);
    let known = |block: Option<i64>| block.map_or_else(|| "unknown".to_owned(), |block| block.to_string());
    let chain = chain.map(|chain| ChainView {
        head: known(chain.head_block),
        last_final: known(chain.final_block),
        cursor: chain.cursor_block,
        lag: known(chain.final_block.map(|last_final| last_final - chain.cursor_block)),
        last_error: chain.last_error.unwrap_or_else(|| "none".to_owned()),
    });
    page(
        StatusCode::OK,
        OverviewPage {
            t: Lang::En.messages()?,
            operator: &session.operator,
            csrf: &session.csrf_token,
            counts,
            chain,
            deliveries,
            backlog,
            dead,
            chart: VolumeChart::of(&buckets, today),
            actions: actions
                .into_iter()
                .map(|action| (time(action.at), action.operator, action.action, action.subject))
                .collect(),
        }
        .render(),
    )
}

/// Page size of the payments list.
const PAGE: i64 = 50;

/// A page of the dashboard that needs a session: the session, or the
/// redirect to the sign-in.
async fn signed_in(state: &AppState, request: &HttpRequest) -> Result<Result<Session, HttpResponse>, ApiError> {
    Ok(session(state, request)
        .await?
        .ok_or_else(|| see_other("/admin/sign-in").finish()))
}

/// A form post of the dashboard: the session if it carries the session's
/// CSRF token; 403 if not; the redirect to the sign-in without a session.
async fn posted(
    state: &AppState,
    request: &HttpRequest,
    csrf: &str,
) -> Result<Result<Session, HttpResponse>, ApiError> {
    let session = signed_in(state, request).await?;
    if session
        .as_ref()
        .is_ok_and(|session| !same_token(csrf, &session.csrf_token))
    {
        return Err(ApiError::Forbidden("missing or wrong CSRF token".into()));
    }
    Ok(session)
}

/// `GET /admin/payments`'s query.
#[derive(Deserialize, Default)]
pub struct PaymentsQuery {
    /// An order id, a receiving address or a txid.
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    /// `YYYY-MM-DD` (UTC), inclusive.
    #[serde(default)]
    from: String,
    /// `YYYY-MM-DD` (UTC), exclusive.
    #[serde(default)]
    to: String,
    /// `<created_at micros>.<id>` of the last row of the previous page.
    #[serde(default)]
    before: String,
}

/// One row of the payments list.
struct PaymentLine {
    id: String,
    order_id: String,
    amount: String,
    status: &'static str,
    address: String,
    created: String,
}

/// `templates/admin_payments.html`.
#[derive(Template)]
#[template(path = "admin_payments.html")]
struct PaymentsPage<'a> {
    t: &'static Messages,
    operator: &'a str,
    csrf: &'a str,
    q: &'a str,
    /// Each status and whether the filter has it.
    statuses: Vec<(&'static str, bool)>,
    from: &'a str,
    to: &'a str,
    problem: Option<String>,
    rows: Vec<PaymentLine>,
    next: Option<String>,
}

/// A receiver's answer as the pages show it: `HTTP <status>`, else the
/// first `chars` characters of the error, else `none`.
fn answer(status: Option<i32>, error: Option<&str>, chars: usize, none: &str) -> String {
    match (status, error) {
        (Some(status), _) => format!("HTTP {status}"),
        (None, Some(error)) => error.chars().take(chars).collect(),
        (None, None) => none.to_owned(),
    }
}

fn time(at: chrono::NaiveDateTime) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The filter `query` asks for, or what is wrong with it.
fn filter_of(query: &PaymentsQuery) -> Result<tronpay_db::payments::ListFilter, String> {
    let mut filter = tronpay_db::payments::ListFilter::default();
    let q = query.q.trim();
    if !q.is_empty() {
        if tronpay_domain::TronAddress::parse(q).is_ok() {
            filter.address = Some(q.to_owned());
        } else if q.len() == 64 && q.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            filter.transaction = Some(q.to_ascii_lowercase());
        } else {
            filter.order_id = Some(q.to_owned());
        }
    }
    if !query.status.is_empty() {
        filter.status = Some(
            query
                .status
                .parse()
                .map_err(|_| "status is pending, completed, expired or failed".to_owned())?,
        );
    }
    let day = |text: &str, what: &str| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map(|day| day.and_time(chrono::NaiveTime::MIN))
            .map_err(|_| format!("{what} is a date such as 2026-12-01"))
    };
    if !query.from.is_empty() {
        filter.created_from = Some(day(&query.from, "from")?);
    }
    if !query.to.is_empty() {
        filter.created_to = Some(day(&query.to, "to")?);
    }
    Ok(filter)
}

/// `GET /admin/payments`: search (order id, address or txid), filter by
/// status and creation date, newest first, [`PAGE`] a page.
pub async fn payments(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<PaymentsQuery>,
) -> Result<HttpResponse, ApiError> {
    let session = match signed_in(&state, &request).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let (rows, problem, next) = match filter_of(&query) {
        Err(problem) => (Vec::new(), Some(problem), None),
        Ok(filter) => {
            let after = query.before.split_once('.').and_then(|(micros, id)| {
                let micros = micros.parse::<i64>().ok()?;
                Some((
                    chrono::DateTime::from_timestamp_micros(micros)?.naive_utc(),
                    id.to_owned(),
                ))
            });
            let mut conn = state.pool.get().await?;
            let rows = tronpay_db::payments::list(&mut conn, &filter, after, PAGE).await?;
            drop(conn);
            let next = (rows.len() == usize::try_from(PAGE).unwrap_or(usize::MAX))
                .then(|| rows.last())
                .flatten()
                .map(|last| {
                    let mut link = url::form_urlencoded::Serializer::new(String::new());
                    link.extend_pairs([
                        ("q", query.q.as_str()),
                        ("status", &query.status),
                        ("from", &query.from),
                        ("to", &query.to),
                    ]);
                    link.append_pair(
                        "before",
                        &format!("{}.{}", last.created_at.and_utc().timestamp_micros(), last.id.as_str()),
                    );
                    format!("/admin/payments?{}", link.finish())
                });
            (rows, None, next)
        }
    };
    let rows = rows
        .iter()
        .map(|row| PaymentLine {
            id: row.id.as_str().to_owned(),
            order_id: row.order_id.clone(),
            amount: row
                .amount_due()
                .map_or_else(|_| "?".to_owned(), |amount| amount.to_string()),
            status: row.status().as_str(),
            address: row.wallet_address.clone(),
            created: time(row.created_at),
        })
        .collect();
    page(
        StatusCode::OK,
        PaymentsPage {
            t: Lang::En.messages()?,
            operator: &session.operator,
            csrf: &session.csrf_token,
            q: &query.q,
            statuses: tronpay_domain::PaymentStatus::ALL
                .iter()
                .map(|status| (status.as_str(), status.as_str() == query.status))
                .collect(),
            from: &query.from,
            to: &query.to,
            problem,
            rows,
            next,
        }
        .render(),
    )
}

/// The payment as its page shows it.
struct PaymentView {
    id: String,
    order_id: String,
    status: &'static str,
    pending: bool,
    amount: String,
    received: String,
    address: String,
    created: String,
    expires: String,
}

/// One delivery as the payment's page shows it.
struct DeliveryLine {
    id: String,
    event: &'static str,
    status: &'static str,
    attempts: i32,
    last: String,
    /// Delivered, failed or dead: it may be sent again.
    finished: bool,
}

/// `templates/admin_payment.html`.
#[derive(Template)]
#[template(path = "admin_payment.html")]
struct PaymentPage<'a> {
    t: &'static Messages,
    operator: &'a str,
    csrf: &'a str,
    notice: Option<&'a str>,
    payment: PaymentView,
    /// When, event, message.
    trail: Vec<(String, String, String)>,
    /// txid, block, amount, state.
    transfers: Vec<(String, u64, String, &'static str)>,
    deliveries: Vec<DeliveryLine>,
}

/// `?done=` of a payment's page after an action.
#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /admin/payments/{id}`: the payment, its audit trail, transfers and
/// deliveries; cancel and send-again forms.
pub async fn payment(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    done: web::Query<Done>,
) -> Result<HttpResponse, ApiError> {
    let session = match signed_in(&state, &request).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let Ok(id) = tronpay_domain::PaymentId::parse(&path) else {
        return Err(ApiError::NotFound("no such payment"));
    };
    let mut conn = state.pool.get().await?;
    let Some(row) = tronpay_db::payments::find(&mut conn, id.as_str()).await? else {
        return Err(ApiError::NotFound("no such payment"));
    };
    let trail = tronpay_db::logs::for_payment(&mut conn, &id).await?;
    let transfers = tronpay_db::matching::transfers_of(&mut conn, &id).await?;
    let deliveries = tronpay_db::deliveries::for_payment(&mut conn, &id).await?;
    drop(conn);
    let notice = match done.done.as_deref() {
        Some("cancelled") => Some("Payment cancelled."),
        Some("not-pending") => Some("The payment is not pending any more: nothing was cancelled."),
        Some("queued") => Some("The delivery is queued to be sent again."),
        Some("unfinished") => Some("That delivery is already waiting to be sent: nothing changed."),
        _ => None,
    };
    let view = PaymentView {
        id: row.id.as_str().to_owned(),
        order_id: row.order_id.clone(),
        status: row.status().as_str(),
        pending: !row.status().is_final(),
        amount: row
            .amount_due()
            .map_or_else(|_| "?".to_owned(), |amount| amount.to_string()),
        received: row
            .received_amount()
            .ok()
            .flatten()
            .map_or_else(|| "nothing".to_owned(), |amount| format!("{amount} USDT")),
        address: row.wallet_address.clone(),
        created: time(row.created_at),
        expires: time(row.expires_at),
    };
    page(
        StatusCode::OK,
        PaymentPage {
            t: Lang::En.messages()?,
            operator: &session.operator,
            csrf: &session.csrf_token,
            notice,
            payment: view,
            trail: trail
                .into_iter()
                .map(|entry| {
                    (
                        time(entry.created_at),
                        entry.event_type,
                        entry.message.unwrap_or_default(),
                    )
                })
                .collect(),
            transfers: transfers
                .iter()
                .map(|stored| {
                    (
                        stored.transfer.id.txid.as_str().to_owned(),
                        stored.transfer.block_number,
                        stored.transfer.amount.to_string(),
                        stored.status.as_str(),
                    )
                })
                .collect(),
            deliveries: deliveries
                .iter()
                .map(|delivery| DeliveryLine {
                    id: delivery.id.0.to_string(),
                    event: delivery.event_type.as_str(),
                    status: delivery.status.as_str(),
                    attempts: delivery.attempts,
                    last: answer(delivery.last_status, delivery.last_error.as_deref(), 120, "none yet"),
                    finished: !matches!(
                        delivery.status,
                        tronpay_domain::DeliveryStatus::Pending | tronpay_domain::DeliveryStatus::Sending
                    ),
                })
                .collect(),
        }
        .render(),
    )
}

/// The cancel form.
#[derive(Deserialize)]
pub struct CancelForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /admin/payments/{id}/cancel`: cancels the payment as the API's
/// cancel does, naming the operator in the audit trail.
pub async fn cancel(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<CancelForm>,
) -> Result<HttpResponse, ApiError> {
    let session = match posted(&state, &request, &form.csrf).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let Ok(id) = tronpay_domain::PaymentId::parse(&path) else {
        return Err(ApiError::NotFound("no such payment"));
    };
    let reason: String = form.reason.chars().filter(|c| !c.is_control()).take(200).collect();
    let mut conn = state.pool.get().await?;
    let Some(row) = tronpay_db::payments::find(&mut conn, id.as_str()).await? else {
        return Err(ApiError::NotFound("no such payment"));
    };
    drop(conn);
    let by = crate::v1::payments::Actor::Operator(&session.operator);
    let cancelled = crate::v1::payments::cancel_payment(&state, &row, by, &reason).await?;
    if cancelled.is_some() {
        let mut conn = state.pool.get().await?;
        operators::record_action(&mut conn, &session.operator, "cancel payment", id.as_str()).await?;
    }
    tracing::info!(payment_id = %id, operator = %session.operator, cancelled = cancelled.is_some(), "operator cancel");
    let done = if cancelled.is_some() {
        "cancelled"
    } else {
        "not-pending"
    };
    Ok(see_other(&format!("/admin/payments/{id}?done={done}")).finish())
}

/// `POST /admin/deliveries/{id}/redeliver`: sends a finished delivery again
/// (same `webhook-id`), as the API's redeliver does, naming the operator.
pub async fn redeliver(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    let session = match posted(&state, &request, &form.csrf).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let Ok(id) = uuid::Uuid::parse_str(&path) else {
        return Err(ApiError::NotFound("no such delivery"));
    };
    let mut conn = state.pool.get().await?;
    let who = format!("operator {}", session.operator);
    let outcome = tronpay_db::deliveries::redeliver(&mut conn, tronpay_domain::DeliveryId(id), &who).await?;
    let (row, done) = match outcome {
        tronpay_db::deliveries::Redelivery::Queued(row) => {
            operators::record_action(&mut conn, &session.operator, "send delivery again", &id.to_string()).await?;
            tracing::info!(delivery = %id, operator = %session.operator, "operator redelivery");
            (row, "queued")
        }
        // Pending or being sent already (the page showed it finished).
        tronpay_db::deliveries::Redelivery::Unfinished(row) => (row, "unfinished"),
        tronpay_db::deliveries::Redelivery::NotFound => return Err(ApiError::NotFound("no such delivery")),
    };
    drop(conn);
    Ok(see_other(&format!("/admin/payments/{}?done={done}", row.payment_id)).finish())
}

/// One transfer as the transfers page shows it.
struct TransferLine {
    txid: String,
    log_index: u32,
    block: u64,
    to: String,
    amount: String,
    state: &'static str,
    kind: &'static str,
    payment: Option<String>,
    /// Final and counted by no payment: the assign form shows.
    assignable: bool,
}

/// `templates/admin_transfers.html`.
#[derive(Template)]
#[template(path = "admin_transfers.html")]
struct TransfersPage<'a> {
    t: &'static Messages,
    operator: &'a str,
    csrf: &'a str,
    /// `assignable`, `partial` or `all`.
    view: &'a str,
    problem: Option<String>,
    transfers: Vec<TransferLine>,
}

/// `GET /admin/transfers`'s query.
#[derive(Deserialize)]
pub struct TransfersQuery {
    /// `partial` (transfers that paid part of a payment) or `all` (every
    /// recent transfer); otherwise those no payment counted.
    #[serde(default)]
    view: String,
    /// Why the last assignment was refused (shown at the top).
    problem: Option<String>,
}

/// `GET /admin/transfers`: the 100 most recent final transfers no payment
/// counted (unmatched or late), those that paid part of a payment
/// (`?view=partial`, each linked to its payment), or every recent one
/// (`?view=all`); each assignable one with a form to credit it to a
/// payment.
pub async fn transfers(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<TransfersQuery>,
) -> Result<HttpResponse, ApiError> {
    let session = match signed_in(&state, &request).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let view = match query.view.as_str() {
        "partial" => "partial",
        "all" => "all",
        _ => "assignable",
    };
    let mut conn = state.pool.get().await?;
    // The API's transfer list, and its definition of what can be assigned.
    let filter = tronpay_db::matching::TransferFilter {
        assignable: view == "assignable",
        address: None,
        kind: (view == "partial").then_some(tronpay_domain::MatchKind::Partial),
    };
    let rows = tronpay_db::matching::list_transfers(&mut conn, &filter, None, 100).await?;
    drop(conn);
    let transfers = rows
        .iter()
        .map(|stored| TransferLine {
            txid: stored.transfer.id.txid.as_str().to_owned(),
            log_index: stored.transfer.id.log_index,
            block: stored.transfer.block_number,
            to: stored.transfer.to.to_base58(),
            amount: stored.transfer.amount.to_string(),
            state: stored.status.as_str(),
            kind: stored
                .match_kind
                .map_or("not matched yet", tronpay_domain::MatchKind::as_str),
            payment: stored.payment_id.as_ref().map(|id| id.as_str().to_owned()),
            assignable: stored.status == tronpay_domain::TransferState::Confirmed
                && stored
                    .match_kind
                    .is_some_and(|kind| tronpay_db::matching::ASSIGNABLE.contains(&kind)),
        })
        .collect();
    page(
        StatusCode::OK,
        TransfersPage {
            t: Lang::En.messages()?,
            operator: &session.operator,
            csrf: &session.csrf_token,
            view,
            problem: query.problem.clone(),
            transfers,
        }
        .render(),
    )
}

/// The assign form.
#[derive(Deserialize)]
pub struct AssignForm {
    csrf: String,
    payment_id: String,
    /// The confirmation checkbox (`yes`).
    #[serde(default)]
    confirm: String,
}

/// `POST /admin/transfers/{txid}/{log_index}/assign`: credits the transfer
/// to the payment, as the API's assign does, naming the operator; refused
/// without the confirmation box ticked. Back to the payment's page, or to
/// the transfers page with the reason.
pub async fn assign(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<AssignForm>,
) -> Result<HttpResponse, ApiError> {
    let session = match posted(&state, &request, &form.csrf).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let back_with = |problem: &str| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("problem", problem)
            .finish();
        see_other(&format!("/admin/transfers?{query}")).finish()
    };
    if form.confirm != "yes" {
        return Ok(back_with("Tick the confirmation box to assign a transfer."));
    }
    let (txid, index) = path.into_inner();
    let (Ok(txid), Ok(log_index)) = (tronpay_domain::TxId::parse(&txid), index.parse()) else {
        return Err(ApiError::NotFound("no such transfer"));
    };
    let Ok(target) = tronpay_domain::PaymentId::parse(form.payment_id.trim()) else {
        return Ok(back_with("That is not a payment id."));
    };
    let transfer_id = tronpay_domain::TransferId { txid, log_index };
    let by = crate::v1::payments::Actor::Operator(&session.operator);
    match crate::v1::transfers::assign_transfer(&state, &transfer_id, &target, by).await {
        Ok((payment, _)) => {
            let mut conn = state.pool.get().await?;
            let subject = format!("{transfer_id} → {}", payment.id);
            operators::record_action(&mut conn, &session.operator, "assign transfer", &subject).await?;
            tracing::info!(transfer = %transfer_id, payment_id = %payment.id, operator = %session.operator, "transfer assigned by an operator");
            Ok(see_other(&format!("/admin/payments/{}", payment.id)).finish())
        }
        Err(crate::v1::transfers::Refused::Problem(problem)) => Ok(back_with(&problem.detail)),
        Err(crate::v1::transfers::Refused::Db(error)) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    #[test]
    fn the_settings_rows_name_each_setting_and_hide_passwords() {
        let db = tronpay_db::DbSettings {
            database_url: "postgres://tronpay:hunter2@db.internal:5432/tronpay?sslmode=require".into(),
            ..Default::default()
        };
        let bus = tronpay_bus::BusSettings {
            rabbitmq_url: "amqps://tronpay:rabbit-secret@mq.internal/%2f".into(),
            ..Default::default()
        };
        let mut rows = settings_rows(&db);
        rows.extend(settings_rows(&bus));
        let shown = format!("{rows:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("rabbit-secret"),
            "{shown}"
        );
        let value = |name: &str| {
            rows.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        assert_eq!(
            value("DATABASE_URL"),
            Some("postgres://tronpay:***@db.internal:5432/tronpay?sslmode=require")
        );
        assert_eq!(value("RABBITMQ_URL"), Some("amqps://tronpay:***@mq.internal/%2f"));
        assert_eq!(value("DB_POOL_SIZE"), Some("10"));
        assert_eq!(value("RABBITMQ_CA_FILE"), Some("(not set)"));
        let api = settings_rows(&crate::settings::ApiSettings::default());
        let value = |name: &str| api.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
        assert_eq!(value("MIN_CREDIT_USDT"), Some("0.01"));
        assert_eq!(value("XPUB"), Some("(empty)"));
    }

    fn bucket(day: &str, status: &str, count: i64, received: &str) -> tronpay_db::stats::BucketRow {
        tronpay_db::stats::BucketRow {
            bucket: chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .unwrap()
                .and_time(chrono::NaiveTime::MIN),
            status: status.into(),
            count,
            expected: bigdecimal::BigDecimal::from(0),
            received: bigdecimal::BigDecimal::from_str(received).unwrap(),
        }
    }

    #[test]
    fn the_volume_chart_sums_completed_payments_per_day_exactly() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let rows = [
            // Before the 30 days: left out.
            bucket("2026-11-01", "completed", 9, "900"),
            bucket("2026-11-02", "completed", 1, "0.000001"),
            bucket("2026-11-30", "completed", 2, "10.5"),
            // Only completed payments count.
            bucket("2026-11-30", "expired", 1, "3"),
            bucket("2026-12-01", "completed", 3, "21.000001"),
        ];
        let chart = VolumeChart::of(&rows, today);
        assert_eq!(chart.bars.len(), 30);
        assert_eq!(
            (chart.bars[0].day.as_str(), chart.bars[29].day.as_str()),
            ("2026-11-02", "2026-12-01")
        );
        assert_eq!((chart.total.as_str(), chart.max.as_str()), ("31.500002", "21.000001"));
        let today_bar = &chart.bars[29];
        assert_eq!(
            (today_bar.height, today_bar.y, today_bar.completed),
            (CHART_HEIGHT, 0, 3)
        );
        // 10.5 of 21.000001, of 160 units: 80.
        assert_eq!((chart.bars[28].height, chart.bars[28].volume.as_str()), (80, "10.5"));
        // A dust day still shows; an empty day does not.
        assert_eq!((chart.bars[0].height, chart.bars[1].height), (2, 0));
        assert_eq!(chart.bars[1].volume, "0");
        assert_eq!(chart.bars[29].x, 29 * CHART_STEP + 2);
    }
}
