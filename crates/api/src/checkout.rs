//! The checkout page buyers pay through (PRODUCT §11): `GET /pay/{id}`,
//! server-rendered from the askama templates in `templates/`, in English,
//! 简体中文, Русский or Español (message files in `i18n/`), with the QR code
//! of the address as inline SVG, and the stylesheet and script it loads
//! (`/assets/…`, compiled in; no CDN, no font). It owns what a buyer may
//! see of a payment — its [`BuyerView`] — and nothing else: no callback URL,
//! no metadata, no idempotency key.
//!
//! The page works without JavaScript (a `<noscript>` refresh every
//! [`REFRESH_SECONDS`]); with it, `checkout.js` shows the countdown, the copy
//! buttons and the status as the stream of `GET /v1/payments/{id}/stream`
//! reports it. Every answer carries a strict Content-Security-Policy: scripts
//! and styles only from this origin, nothing inline.

use std::sync::LazyLock;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use tronpay_db::chain::ChainState;
use tronpay_db::matching::StoredTransfer;
use tronpay_db::models::PaymentRow;
use tronpay_domain::{PaymentId, PaymentStatus, TransferState, UsdtAmount};

use crate::error::ApiError;
use crate::state::AppState;

/// How often the page reloads itself when JavaScript is off, in seconds.
pub const REFRESH_SECONDS: u32 = 5;

/// The Content-Security-Policy of the checkout page (and its 404): nothing
/// inline, nothing from elsewhere; the stream is same-origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// A language of the pages (in the order of [`MESSAGES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En = 0,
    Zh = 1,
    Ru = 2,
    Es = 3,
}

impl Lang {
    /// The language a request asks for: `?lang=` when it names one of ours
    /// (`en`, `zh`/`zh-CN`, `ru`, `es`, any case), else the first of ours in
    /// `Accept-Language` by quality, else English.
    pub fn negotiate(query: Option<&str>, accept_language: Option<&str>) -> Self {
        query
            .and_then(Self::from_tag)
            .or_else(|| {
                accept_language
                    .map(accept_language::parse)
                    .unwrap_or_default()
                    .iter()
                    .find_map(|tag| Self::from_tag(tag))
            })
            .unwrap_or(Self::En)
    }

    /// By the primary subtag of a BCP 47 tag (`zh-Hans-CN` is `zh`).
    fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        match primary.to_ascii_lowercase().as_str() {
            "en" => Some(Self::En),
            "zh" => Some(Self::Zh),
            "ru" => Some(Self::Ru),
            "es" => Some(Self::Es),
            _ => None,
        }
    }

    /// This language's messages; an error only if a message file of the
    /// build does not parse (the unit test reads them all).
    pub fn messages(self) -> Result<&'static Messages, ApiError> {
        let all = MESSAGES
            .as_ref()
            .map_err(|error| ApiError::Internal(anyhow::anyhow!("a message file of the pages: {error}")))?;
        Ok(&all[self as usize])
    }
}

/// The texts of the pages in one language, from `i18n/<lang>.json` (every
/// file must have every key and no other: a unit test reads them all).
/// `{n}`, `{of}`, `{due}` and `{time}` are filled in where the text says.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Messages {
    /// The `lang` attribute of the page (`en`, `zh-CN`, `ru`, `es`).
    pub lang: String,
    pub title: String,
    pub heading: String,
    pub network: String,
    pub exchange_warning: String,
    pub amount: String,
    pub exact_amount: String,
    pub address: String,
    pub order: String,
    pub expires: String,
    pub expires_at: String,
    pub copy: String,
    pub copied: String,
    pub qr_caption: String,
    pub status: String,
    pub waiting: String,
    pub detected: String,
    pub confirming: String,
    pub paid: String,
    pub redirecting: String,
    pub back_to_shop: String,
    pub expired: String,
    pub cancelled: String,
    pub partially_paid: String,
    pub no_script: String,
    pub not_found_title: String,
    pub not_found: String,
    pub language: String,
}

/// The four message files in [`Lang`]'s order, parsed once.
static MESSAGES: LazyLock<Result<[Messages; 4], serde_json::Error>> = LazyLock::new(|| {
    Ok([
        serde_json::from_str(include_str!("../i18n/en.json"))?,
        serde_json::from_str(include_str!("../i18n/zh.json"))?,
        serde_json::from_str(include_str!("../i18n/ru.json"))?,
        serde_json::from_str(include_str!("../i18n/es.json"))?,
    ])
});

/// Where a payment stands, as the buyer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuyerState {
    /// Pending, nothing seen.
    Waiting,
    /// A transfer was seen in a block that is not final yet; `confirmations`
    /// of `required` blocks (the transfer's block counts as the first) when
    /// the chain heights are known.
    Confirming {
        confirmations: u64,
        required: u64,
    },
    /// A transfer was seen; the chain heights are not known yet.
    Detected,
    /// Pending, paid in part: `due` is still to pay.
    PartiallyPaid {
        due: UsdtAmount,
    },
    Paid,
    Expired,
    Cancelled,
}

impl BuyerState {
    /// The state of `payment`, given the transfers credited to or detected
    /// for it ([`tronpay_db::matching::transfers_of`]) and the chain as the
    /// watcher last recorded it (for "n of N").
    pub fn of(payment: &PaymentRow, transfers: &[StoredTransfer], chain: Option<&ChainState>) -> Self {
        match payment.status() {
            PaymentStatus::Completed => return Self::Paid,
            PaymentStatus::Expired => return Self::Expired,
            PaymentStatus::Failed => return Self::Cancelled,
            PaymentStatus::Pending => {}
        }
        // The newest transfer still waiting for its block to be final.
        if let Some(waiting) = transfers
            .iter()
            .filter(|stored| stored.status == TransferState::Detected && stored.payment_id.is_none())
            .map(|stored| stored.transfer.block_number)
            .max()
        {
            let heights = chain.and_then(|chain| Some((chain.head_block?, chain.final_block?)));
            return match heights {
                Some((head, last_final)) if head >= last_final => {
                    let block = i64::try_from(waiting).unwrap_or(i64::MAX);
                    let required = u64::try_from(head - last_final).unwrap_or(0) + 1;
                    let confirmations = u64::try_from(head.saturating_sub(block) + 1).unwrap_or(1);
                    Self::Confirming {
                        confirmations: confirmations.clamp(1, required),
                        required,
                    }
                }
                _ => Self::Detected,
            };
        }
        let received = payment.received_amount().ok().flatten();
        match (received, payment.amount_due()) {
            (Some(received), Ok(due)) if received.base_units() > 0 => match due.checked_sub(received) {
                Some(left) if left.base_units() > 0 => Self::PartiallyPaid { due: left },
                _ => Self::Waiting,
            },
            _ => Self::Waiting,
        }
    }

    /// The CSS class and `data-state` of the status (`waiting`,
    /// `confirming`, `detected`, `partially_paid`, `paid`, `expired`,
    /// `cancelled`).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Confirming { .. } => "confirming",
            Self::Detected => "detected",
            Self::PartiallyPaid { .. } => "partially_paid",
            Self::Paid => "paid",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the state can no longer change (the page stops listening).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Paid | Self::Expired | Self::Cancelled)
    }

    /// The status line in `messages`' language.
    pub fn text(&self, messages: &Messages) -> String {
        match self {
            Self::Waiting => messages.waiting.clone(),
            Self::Confirming {
                confirmations,
                required,
            } => messages
                .confirming
                .replace("{n}", &confirmations.to_string())
                .replace("{of}", &required.to_string()),
            Self::Detected => messages.detected.clone(),
            Self::PartiallyPaid { due } => messages.partially_paid.replace("{due}", &due.to_string()),
            Self::Paid => messages.paid.clone(),
            Self::Expired => messages.expired.clone(),
            Self::Cancelled => messages.cancelled.clone(),
        }
    }
}

/// Payment `id` and the state its buyer sees, read from the database (the
/// payment, its transfers, the chain heights) — for the page and the first
/// event of its stream; `None` when there is no such payment.
pub async fn buyer_view(
    state: &AppState,
    id: &PaymentId,
) -> Result<Option<(PaymentRow, BuyerState)>, tronpay_db::DbError> {
    let mut conn = state.pool.get().await?;
    let Some(payment) = tronpay_db::payments::find(&mut conn, id.as_str()).await? else {
        return Ok(None);
    };
    let transfers = tronpay_db::matching::transfers_of(&mut conn, id).await?;
    let chain = tronpay_db::chain::state(&mut conn).await?;
    let buyer_state = BuyerState::of(&payment, &transfers, chain.as_ref());
    Ok(Some((payment, buyer_state)))
}

/// `templates/checkout.html`.
#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage<'a> {
    t: &'static Messages,
    id: &'a str,
    order_id: &'a str,
    amount: String,
    address: &'a str,
    state: BuyerState,
    status_text: String,
    /// Still payable: the amount, address, QR code and countdown are shown.
    live: bool,
    paid: bool,
    redirect_url: Option<&'a str>,
    expires_at_rfc3339: String,
    expires_text: String,
    minutes_left: i64,
    refresh_seconds: u32,
    qr_svg: String,
}

/// `templates/not_found.html`.
#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFoundPage {
    t: &'static Messages,
}

/// `?lang=` of the pages.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub lang: Option<String>,
}

/// The language of `request` ([`Lang::negotiate`]).
pub fn language(request: &HttpRequest, query: &PageQuery) -> Lang {
    let accept = request
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok());
    Lang::negotiate(query.lang.as_deref(), accept)
}

/// `GET /pay/{id}`: the checkout page of a payment, or a friendly 404 page
/// (an unknown or malformed id). A database that is down is the usual 503.
pub async fn page(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let messages = language(&request, &query).messages()?;
    let Ok(id) = PaymentId::parse(&path) else {
        return not_found(messages);
    };
    let Some((payment, buyer_state)) = buyer_view(&state, &id).await? else {
        return not_found(messages);
    };
    let amount = payment
        .amount_due()
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("payment {id} has an invalid amount: {error}")))?;
    let now = chrono::Utc::now().naive_utc();
    let live = !buyer_state.is_final();
    let page = CheckoutPage {
        t: messages,
        id: id.as_str(),
        order_id: &payment.order_id,
        amount: amount.to_string(),
        address: &payment.wallet_address,
        status_text: buyer_state.text(messages),
        paid: buyer_state == BuyerState::Paid,
        state: buyer_state,
        live,
        redirect_url: payment.redirect_url.as_deref(),
        expires_at_rfc3339: payment
            .expires_at
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        expires_text: messages
            .expires_at
            .replace("{time}", &payment.expires_at.format("%Y-%m-%d %H:%M").to_string()),
        minutes_left: (payment.expires_at - now).num_minutes().max(0),
        refresh_seconds: REFRESH_SECONDS,
        qr_svg: if live {
            qr_svg(&payment.wallet_address)?
        } else {
            String::new()
        },
    };
    html(StatusCode::OK, page.render())
}

/// The QR code holding `text`, as an inline `<svg>` (no XML declaration).
fn qr_svg(text: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("QR code of {text}: {error}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build())
}

/// The friendly 404 page.
fn not_found(messages: &'static Messages) -> Result<HttpResponse, ApiError> {
    html(StatusCode::NOT_FOUND, NotFoundPage { t: messages }.render())
}

/// A rendered page with the headers every page (checkout and dashboard)
/// carries: the strict Content-Security-Policy, `no-store`, `nosniff`,
/// `no-referrer`. A template that failed to render is a 500.
pub(crate) fn html(status: StatusCode, rendered: askama::Result<String>) -> Result<HttpResponse, ApiError> {
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

/// `GET /assets/{name}`: the stylesheet, the script and the icon of the pages,
/// compiled into the binary; anything else is a 404.
pub async fn asset(path: web::Path<String>) -> HttpResponse {
    let (body, content_type) = match path.as_str() {
        "tronpay.css" => (include_str!("../assets/tronpay.css"), "text/css; charset=utf-8"),
        "checkout.js" => (include_str!("../assets/checkout.js"), "text/javascript; charset=utf-8"),
        "favicon.svg" => (include_str!("../assets/favicon.svg"), "image/svg+xml"),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_file_has_every_key() {
        for text in [
            include_str!("../i18n/en.json"),
            include_str!("../i18n/zh.json"),
            include_str!("../i18n/ru.json"),
            include_str!("../i18n/es.json"),
        ] {
            let messages: Messages = serde_json::from_str(text).unwrap();
            assert!(!messages.lang.is_empty());
            assert!(messages.confirming.contains("{n}") && messages.confirming.contains("{of}"));
            assert!(messages.partially_paid.contains("{due}"));
            assert!(messages.expires_at.contains("{time}"));
        }
    }

    #[test]
    fn the_language_comes_from_the_query_then_accept_language() {
        assert_eq!(Lang::negotiate(Some("ru"), Some("es")), Lang::Ru);
        assert_eq!(Lang::negotiate(Some("zh-CN"), None), Lang::Zh);
        assert_eq!(Lang::negotiate(Some("xx"), Some("fr, es;q=0.8, en;q=0.5")), Lang::Es);
        assert_eq!(Lang::negotiate(None, Some("en;q=0.2, zh-Hans-CN;q=0.9")), Lang::Zh);
        assert_eq!(Lang::negotiate(None, Some("de")), Lang::En);
        assert_eq!(Lang::negotiate(None, Some(";;,,garbage")), Lang::En);
        assert_eq!(Lang::negotiate(None, None), Lang::En);
    }
}
