//! The operator dashboard (PRODUCT §11), `/admin`: sign-in and sign-out,
//! sessions and CSRF tokens, and the overview page.
//!
//! Sessions live in PostgreSQL (`operator_sessions`, keyed by the SHA-256 of
//! the cookie's random token), so any API replica serves any operator. The
//! cookie is `HttpOnly`, `SameSite=Strict`, limited to `/admin`, and `Secure`
//! when the request came over TLS; a session lasts [`SESSION_HOURS`]. Every
//! form carries the session's CSRF token (the sign-in form a token of its
//! own, doubled in a short-lived cookie), compared in constant time; a POST
//! without it is refused with 403. Failed sign-ins are recorded in the
//! database: more than [`MAX_FAILURES_PER_NAME`] for a name or
//! [`MAX_FAILURES_PER_IP`] from an address within [`FAILURE_WINDOW_MINUTES`]
//! and sign-in is refused (429) until they age out.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tronpay_db::operators::{self, Session};
use tronpay_domain::operator;

use crate::checkout::{CONTENT_SECURITY_POLICY, Lang, Messages};
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

/// A page with the headers every dashboard page carries.
fn page(status: StatusCode, rendered: askama::Result<String>) -> Result<HttpResponse, ApiError> {
    let body = rendered.map_err(|error| ApiError::Internal(anyhow::anyhow!("rendering a page: {error}")))?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .body(body))
}

fn see_other(location: &'static str) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::SeeOther();
    response.insert_header((header::LOCATION, location));
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
        tracing::warn!(operator = %name, %client_ip, "sign-in refused: too many failures");
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
    // argon2 takes tens of milliseconds of CPU: off the async threads.
    let matches = web::block(move || operator::verify_password(&password, &hash))
        .await
        .map_err(|error| ApiError::Internal(error.into()))?;
    let Some(row) = found.filter(|_| matches) else {
        operators::record_failure(&mut conn, &name, &client_ip).await?;
        tracing::warn!(operator = %name, %client_ip, "sign-in failed");
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
    let Some(session) = session(&state, &request).await? else {
        return Ok(see_other("/admin/sign-in").finish());
    };
    if !same_token(&form.csrf, &session.csrf_token) {
        return Err(ApiError::Forbidden("missing or wrong CSRF token".into()));
    }
    if let Some(cookie) = request.cookie(SESSION_COOKIE) {
        let mut conn = state.pool.get().await?;
        operators::end_session(&mut conn, &operator::token_hash(cookie.value())).await?;
    }
    tracing::info!(operator = %session.operator, "operator signed out");
    Ok(see_other("/admin/sign-in")
        .append_header((header::SET_COOKIE, cookie(&request, SESSION_COOKIE, "", 0)))
        .finish())
}

/// `GET /admin`: the overview — payments by status, the chain, webhook
/// deliveries of the last 30 days. Not signed in: a redirect to the sign-in.
pub async fn overview(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let Some(session) = session(&state, &request).await? else {
        return Ok(see_other("/admin/sign-in").finish());
    };
    let now = chrono::Utc::now().naive_utc();
    let mut conn = state.pool.get().await?;
    let counts = tronpay_db::stats::status_counts(&mut conn).await?;
    let chain = tronpay_db::chain::state(&mut conn).await?;
    let deliveries = tronpay_db::stats::deliveries_by_status(&mut conn, now - chrono::Duration::days(30), now).await?;
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
        }
        .render(),
    )
}
