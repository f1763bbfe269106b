//! The dashboard's operations pages: webhooks (dead and failed deliveries,
//! retried one by one or all at once; recent failed attempts with the
//! receiver's status and the start of its answer), API keys (created — the
//! key shown once, only its hash kept — and revoked) and the running
//! settings (secrets redacted). Every action is recorded in
//! `operator_actions` with the operator's name, and a retry also in the
//! payment's audit trail.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tronpay_db::{api_keys, deliveries, operators};
use tronpay_domain::{ApiKeyText, DeliveryId, Named as _, Scope};

use super::{Lang, Messages, answer, page, posted, see_other, signed_in, time};
use crate::error::ApiError;
use crate::state::AppState;

/// Dead or failed deliveries shown (and retried by "all"), at most.
const DEAD_SHOWN: i64 = 100;
/// Recent failed attempts shown.
const FAILURES_SHOWN: i64 = 50;
/// Characters of a receiver's answer shown.
const EXCERPT_CHARS: usize = 200;

/// One dead or failed delivery as the webhooks page shows it.
struct DeadLine {
    id: String,
    payment_id: String,
    event: &'static str,
    status: &'static str,
    attempts: i32,
    last: String,
    last_attempt: String,
}

/// One failed attempt as the webhooks page shows it.
struct FailureLine {
    at: String,
    payment_id: String,
    event: String,
    attempt: i32,
    outcome: String,
    /// `HTTP 503` or the error (no answer).
    answer: String,
    /// The start of the receiver's body.
    excerpt: String,
}

/// `templates/admin_webhooks.html`.
#[derive(Template)]
#[template(path = "admin_webhooks.html")]
struct WebhooksPage<'a> {
    t: &'static Messages,
    operator: &'a str,
    csrf: &'a str,
    notice: Option<String>,
    dead: Vec<DeadLine>,
    failures: Vec<FailureLine>,
}

/// `?retried=` of the webhooks page after a retry.
#[derive(Deserialize)]
pub struct Retried {
    retried: Option<usize>,
}

/// `GET /admin/webhooks`: the dead and failed deliveries (newest first,
/// [`DEAD_SHOWN`]) with a retry form each and one for all, and the
/// [`FAILURES_SHOWN`] most recent attempts that did not deliver.
pub async fn webhooks(
    state: web::Data<AppState>,
    request: HttpRequest,
    retried: web::Query<Retried>,
) -> Result<HttpResponse, ApiError> {
    let session = match signed_in(&state, &request).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let mut conn = state.pool.get().await?;
    let dead = deliveries::list(&mut conn, true, DEAD_SHOWN).await?;
    let failures = deliveries::recent_failed_attempts(&mut conn, FAILURES_SHOWN).await?;
    drop(conn);
    let notice = retried.retried.map(|count| match count {
        0 => "Nothing to retry: no delivery is dead or failed.".to_owned(),
        1 => "1 delivery is queued again (same webhook-id).".to_owned(),
        count => format!("{count} deliveries are queued again (same webhook-id)."),
    });
    page(
        StatusCode::OK,
        WebhooksPage {
            t: Lang::En.messages()?,
            operator: &session.operator,
            csrf: &session.csrf_token,
            notice,
            dead: dead
                .iter()
                .map(|row| DeadLine {
                    id: row.id.0.to_string(),
                    payment_id: row.payment_id.as_str().to_owned(),
                    event: row.event_type.as_str(),
                    status: row.status.as_str(),
                    attempts: row.attempts,
                    last: answer(
                        row.last_status,
                        row.last_error.as_deref(),
                        EXCERPT_CHARS,
                        "no answer recorded",
                    ),
                    last_attempt: row.last_attempt_at.map(time).unwrap_or_default(),
                })
                .collect(),
            failures: failures
                .into_iter()
                .map(|attempt| FailureLine {
                    at: time(attempt.started_at),
                    payment_id: attempt.payment_id.as_str().to_owned(),
                    event: attempt.event_type,
                    attempt: attempt.attempt,
                    outcome: attempt.outcome,
                    answer: answer(
                        attempt.http_status,
                        attempt.error.as_deref(),
                        EXCERPT_CHARS,
                        "no answer",
                    ),
                    excerpt: attempt
                        .response_body
                        .unwrap_or_default()
                        .chars()
                        .take(EXCERPT_CHARS)
                        .collect(),
                })
                .collect(),
        }
        .render(),
    )
}

/// The retry form: one delivery's id, or none for every dead and failed one.
#[derive(Deserialize)]
pub struct RetryForm {
    csrf: String,
    #[serde(default)]
    delivery_id: String,
}

/// `POST /admin/webhooks/retry`: puts the delivery (or, without
/// `delivery_id`, every dead and failed delivery) back in line with its
/// `webhook-id` unchanged, as `tronpay webhooks retry` does; logged on each
/// payment and in `operator_actions`. Back to the webhooks page, which says
/// how many.
pub async fn retry(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<RetryForm>,
) -> Result<HttpResponse, ApiError> {
    let session = match posted(&state, &request, &form.csrf).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let one = match form.delivery_id.trim() {
        "" => None,
        text => match uuid::Uuid::parse_str(text) {
            Ok(id) => Some([DeliveryId(id)]),
            Err(_) => return Err(ApiError::NotFound("no such delivery")),
        },
    };
    let who = format!("operator {}", session.operator);
    let mut conn = state.pool.get().await?;
    let count = deliveries::retry(&mut conn, one.as_ref().map(|ids| &ids[..]), &who).await?;
    let (action, subject) = match &one {
        Some([id]) => ("retry delivery", id.0.to_string()),
        None => ("retry dead deliveries", format!("{count} deliveries")),
    };
    operators::record_action(&mut conn, &session.operator, action, &subject).await?;
    drop(conn);
    tracing::info!(operator = %session.operator, count, "operator retried deliveries");
    Ok(see_other(&format!("/admin/webhooks?retried={count}")).finish())
}

/// One key as the API keys page shows it.
struct KeyLine {
    prefix: String,
    name: String,
    scopes: String,
    created: String,
    last_used: String,
    revoked: Option<String>,
}

/// `templates/admin_keys.html`.
#[derive(Template)]
#[template(path = "admin_keys.html")]
struct KeysPage<'a> {
    t: &'static Messages,
    operator: &'a str,
    csrf: &'a str,
    /// A key just created: the only time it is shown.
    created: Option<(String, String)>,
    notice: Option<String>,
    scopes: Vec<&'static str>,
    keys: Vec<KeyLine>,
}

/// `?done=` of the keys page after a revoke.
#[derive(Deserialize)]
pub struct KeysDone {
    done: Option<String>,
}

/// The keys page with `created` (a new key and its name) or a notice.
async fn keys_page(
    state: &AppState,
    session: &tronpay_db::operators::Session,
    status: StatusCode,
    created: Option<(String, String)>,
    notice: Option<String>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = state.pool.get().await?;
    let rows = api_keys::list(&mut conn).await?;
    drop(conn);
    let keys = rows
        .into_iter()
        .map(|row| KeyLine {
            prefix: row.prefix,
            name: row.name,
            scopes: row.scopes.join(", "),
            created: time(row.created_at),
            last_used: row.last_used_at.map_or_else(|| "never".to_owned(), time),
            revoked: row.revoked_at.map(time),
        })
        .collect();
    page(
        status,
        KeysPage {
            t: Lang::En.messages()?,
            operator: &session.operator,
            csrf: &session.csrf_token,
            created,
            notice,
            scopes: Scope::ALL.iter().map(|scope| scope.as_str()).collect(),
            keys,
        }
        .render(),
    )
}

/// `GET /admin/keys`: every API key (prefix, name, scopes, created, last
/// used, revoked) with a revoke form, and the create form.
pub async fn keys(
    state: web::Data<AppState>,
    request: HttpRequest,
    done: web::Query<KeysDone>,
) -> Result<HttpResponse, ApiError> {
    let session = match signed_in(&state, &request).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let notice = match done.done.as_deref() {
        Some("revoked") => Some(format!(
            "Key revoked: this replica refuses it now, every other within {} seconds.",
            state.settings.api_key_cache_seconds
        )),
        Some("already") => Some("That key was revoked already.".to_owned()),
        _ => None,
    };
    keys_page(&state, &session, StatusCode::OK, None, notice).await
}

/// The create form: a name and the ticked scopes (`scope=…` repeated,
/// which `web::Form` cannot read into a list).
#[derive(Default)]
struct CreateKeyForm {
    csrf: String,
    name: String,
    scope: Vec<String>,
}

impl CreateKeyForm {
    /// The form's fields from an `application/x-www-form-urlencoded` body;
    /// unknown fields are ignored.
    fn parse(body: &[u8]) -> Self {
        let mut form = Self::default();
        for (key, value) in url::form_urlencoded::parse(body) {
            match key.as_ref() {
                "csrf" => form.csrf = value.into_owned(),
                "name" => form.name = value.into_owned(),
                "scope" => form.scope.push(value.into_owned()),
                _ => {}
            }
        }
        form
    }
}

/// `POST /admin/keys`: creates a key, as `tronpay keys create` does, and
/// answers with the keys page showing it once (the page is `no-store`; only
/// its hash is kept). 400 with the form again when the name is empty or
/// longer than 64 characters or no known scope is ticked.
pub async fn create_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let form = CreateKeyForm::parse(&body);
    let session = match posted(&state, &request, &form.csrf).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let name = form.name.trim();
    let mut scopes: Vec<Scope> = Vec::new();
    for text in &form.scope {
        let Ok(scope) = text.parse::<Scope>() else {
            continue;
        };
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) || scopes.is_empty() {
        let notice = "A key needs a name (1 to 64 characters) and at least one scope.".to_owned();
        return keys_page(&state, &session, StatusCode::BAD_REQUEST, None, Some(notice)).await;
    }
    let key = ApiKeyText::generate().map_err(|error| ApiError::Internal(anyhow::anyhow!(error)))?;
    let mut conn = state.pool.get().await?;
    let row = api_keys::create(&mut conn, name, &key, &scopes).await?;
    let subject = format!("tpk_{} {:?} ({})", row.prefix, row.name, row.scopes.join(", "));
    operators::record_action(&mut conn, &session.operator, "create API key", &subject).await?;
    drop(conn);
    tracing::info!(operator = %session.operator, prefix = %row.prefix, "API key created from the dashboard");
    let created = Some((key.expose().to_owned(), row.name));
    keys_page(&state, &session, StatusCode::OK, created, None).await
}

/// `POST /admin/keys/{prefix}/revoke`: revokes the key, as `tronpay keys
/// revoke` does. Back to the keys page; 404 for an unknown prefix.
pub async fn revoke_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<super::CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    let session = match posted(&state, &request, &form.csrf).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let prefix = path.into_inner();
    let mut conn = state.pool.get().await?;
    let Some(revoked) = api_keys::revoke(&mut conn, &prefix).await? else {
        return Err(ApiError::NotFound("no such API key"));
    };
    state.keys.forget(&prefix);
    if revoked {
        operators::record_action(&mut conn, &session.operator, "revoke API key", &format!("tpk_{prefix}")).await?;
        tracing::info!(operator = %session.operator, %prefix, "API key revoked from the dashboard");
    }
    drop(conn);
    let done = if revoked { "revoked" } else { "already" };
    Ok(see_other(&format!("/admin/keys?done={done}")).finish())
}

/// `templates/admin_settings.html`.
#[derive(Template)]
#[template(path = "admin_settings.html")]
struct SettingsPage<'a> {
    t: &'static Messages,
    operator: &'a str,
    csrf: &'a str,
    version: &'static str,
    /// `(NAME, value)` of the API's own settings.
    api: Vec<(String, String)>,
    /// `(NAME, value)` of the database and broker settings.
    shared: &'a [(String, String)],
}

/// `GET /admin/settings`: the settings this replica runs with, by their
/// environment names; passwords in URLs redacted, `XPUB` shortened.
pub async fn settings(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let session = match signed_in(&state, &request).await? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    page(
        StatusCode::OK,
        SettingsPage {
            t: Lang::En.messages()?,
            operator: &session.operator,
            csrf: &session.csrf_token,
            version: env!("CARGO_PKG_VERSION"),
            api: super::settings_rows(&state.settings),
            shared: &state.shared_settings,
        }
        .render(),
    )
}
