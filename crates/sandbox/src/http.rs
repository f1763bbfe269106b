//! Routes: java-tron's `/wallet/…` and `/walletsolidity/…`, TronGrid's
//! TRC-20 listing, and the `/sandbox/…` control API.
//!
//! Node routes answer like java-tron, including its habit of reporting a bad
//! request as HTTP 200 `{"Error": …}`; control routes answer 400
//! `{"error": …}`. Neither ever answers 500 for bad input.

use std::borrow::Cow;

use actix_web::http::Method;
use actix_web::web::{self, Bytes};
use actix_web::{FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use tronpay_domain::{TronAddress, TxId, UsdtAmount};

use crate::faults::{self, DEFAULT_STALL_MS, FaultMode, FaultPlan};
use crate::state::{ControlError, GenerateRequest, Output, Shared, TransferRequest};
use crate::trongrid;

type State = web::Data<Shared>;

pub(crate) fn configure(config: &mut web::ServiceConfig) {
    config
        .service(node("/wallet/getnowblock", now_block))
        .service(node("/walletsolidity/getnowblock", solid_now_block))
        .service(node("/wallet/getblockbynum", block_by_num))
        .service(node("/walletsolidity/getblockbynum", solid_block_by_num))
        .service(node("/wallet/gettransactioninfobyblocknum", tx_infos))
        .service(node("/walletsolidity/gettransactioninfobyblocknum", solid_tx_infos))
        .service(web::resource("/v1/accounts/{address}/transactions/trc20").route(web::get().to(trc20_transactions)))
        .service(web::resource("/sandbox/transfer").route(web::post().to(transfer)))
        .service(web::resource("/sandbox/mine").route(web::post().to(mine)))
        .service(web::resource("/sandbox/blocks").route(web::post().to(blocks)))
        .service(web::resource("/sandbox/reorg").route(web::post().to(reorg)))
        .service(web::resource("/sandbox/faults").route(web::post().to(set_faults)))
        .service(web::resource("/sandbox/freeze").route(web::post().to(freeze)))
        .service(web::resource("/sandbox/status").route(web::get().to(status)));
}

/// java-tron answers both POST with a JSON body and GET with query parameters.
fn node<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler.clone()))
        .route(web::get().to(handler))
}

pub(crate) async fn not_found(request: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({
        "error": format!("no route for {} {}", request.method(), request.path())
    }))
}

/// Counts the request and applies the fault in force, if any.
async fn intercept(state: &Shared, request: &HttpRequest) -> Option<HttpResponse> {
    let route = request.match_pattern().unwrap_or_else(|| request.path().to_owned());
    let plan = state.node_request(&route)?;
    faults::respond(plan).await
}

fn json(bytes: Bytes) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(bytes)
}

/// java-tron's way of reporting a bad request.
fn node_error(message: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "Error": message.into() }))
}

async fn now_block(state: State, request: HttpRequest) -> HttpResponse {
    if let Some(response) = intercept(&state, &request).await {
        return response;
    }
    json(
        state
            .block_json(None, false)
            .unwrap_or_else(|| Bytes::from_static(b"{}")),
    )
}

async fn solid_now_block(state: State, request: HttpRequest) -> HttpResponse {
    if let Some(response) = intercept(&state, &request).await {
        return response;
    }
    json(
        state
            .block_json(None, true)
            .unwrap_or_else(|| Bytes::from_static(b"{}")),
    )
}

async fn block_by_num(state: State, request: HttpRequest, body: Bytes) -> HttpResponse {
    block_by_num_at(state, request, body, false).await
}

async fn solid_block_by_num(state: State, request: HttpRequest, body: Bytes) -> HttpResponse {
    block_by_num_at(state, request, body, true).await
}

async fn block_by_num_at(state: State, request: HttpRequest, body: Bytes, solid_only: bool) -> HttpResponse {
    if let Some(response) = intercept(&state, &request).await {
        return response;
    }
    match read_num(&request, &body) {
        Ok(number) => json(
            state
                .block_json(Some(number), solid_only)
                .unwrap_or_else(|| Bytes::from_static(b"{}")),
        ),
        Err(message) => node_error(message),
    }
}

async fn tx_infos(state: State, request: HttpRequest, body: Bytes) -> HttpResponse {
    tx_infos_at(state, request, body, false).await
}

async fn solid_tx_infos(state: State, request: HttpRequest, body: Bytes) -> HttpResponse {
    tx_infos_at(state, request, body, true).await
}

async fn tx_infos_at(state: State, request: HttpRequest, body: Bytes, solid_only: bool) -> HttpResponse {
    if let Some(response) = intercept(&state, &request).await {
        return response;
    }
    match read_num(&request, &body) {
        Ok(number) => json(state.infos_json(number, solid_only)),
        Err(message) => node_error(message),
    }
}

/// The `num` parameter: from the JSON body, or from the query string when
/// the body is empty (GET).
fn read_num(request: &HttpRequest, body: &[u8]) -> Result<u64, String> {
    let value = if request.method() == Method::GET || body.iter().all(u8::is_ascii_whitespace) {
        let object: serde_json::Map<String, serde_json::Value> = query_pairs(request)
            .into_iter()
            .map(|(name, value)| (name, serde_json::Value::String(value)))
            .collect();
        serde_json::Value::Object(object)
    } else {
        serde_json::from_slice(body)
            .map_err(|error| format!("class org.tron.core.exception.JsonFormatException : {error}"))?
    };
    let Some(object) = value.as_object() else {
        return Err("the request body must be a JSON object".into());
    };
    match object.get("num") {
        None | Some(serde_json::Value::Null) => Err("num is required".into()),
        Some(serde_json::Value::Number(number)) => number
            .as_u64()
            .ok_or_else(|| format!("num must be a non-negative integer, not {number}")),
        Some(serde_json::Value::String(text)) => text
            .trim()
            .parse()
            .map_err(|_| format!("num must be a non-negative integer, not {text:?}")),
        Some(other) => Err(format!("num must be a non-negative integer, not {other}")),
    }
}

fn query_pairs(request: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(request.query_string().as_bytes())
        .into_owned()
        .collect()
}

async fn trc20_transactions(state: State, request: HttpRequest, address: web::Path<String>) -> HttpResponse {
    if let Some(response) = intercept(&state, &request).await {
        return response;
    }
    let bad_request =
        |error: String| HttpResponse::BadRequest().json(serde_json::json!({ "success": false, "error": error }));
    let address = match TronAddress::parse(&address) {
        Ok(address) => address,
        Err(error) => return bad_request(format!("Invalid address provided: {error}")),
    };
    let pairs = query_pairs(&request);
    let query = match trongrid::Query::parse(&pairs) {
        Ok(query) => query,
        Err(error) => return bad_request(error),
    };
    let base_url = {
        let info = request.connection_info();
        format!("{}://{}{}", info.scheme(), info.host(), request.path())
    };
    HttpResponse::Ok().json(trongrid::page(&state, &address, &query, &pairs, &base_url))
}

// ----- control API -----

fn bad_request(error: &ControlError) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({ "error": error.0 }))
}

fn control<T: serde::Serialize>(outcome: Result<T, ControlError>) -> HttpResponse {
    match outcome {
        Ok(value) => HttpResponse::Ok().json(value),
        Err(error) => bad_request(&error),
    }
}

/// An empty body reads as `{}`.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|error| ControlError::new(format!("invalid request body: {error}")))
}

fn parse_address(field: &str, text: &str) -> Result<TronAddress, ControlError> {
    TronAddress::parse(text).map_err(|error| ControlError::new(format!("{field} {text:?}: {error}")))
}

/// An exact decimal given as a string (`"12.34"`) or a JSON number (`12.34`,
/// read from its text, never through a float). 0 is an amount (a transfer
/// of 0 is valid on chain); bulk traffic refuses it.
fn parse_amount(raw: &RawValue) -> Result<UsdtAmount, ControlError> {
    let text = raw.get().trim();
    let text: Cow<'_, str> = if text.starts_with('"') {
        Cow::Owned(serde_json::from_str::<String>(text).map_err(|error| ControlError::new(format!("amount: {error}")))?)
    } else {
        Cow::Borrowed(text)
    };
    UsdtAmount::parse(text.trim()).map_err(|error| ControlError::new(format!("amount {text:?}: {error}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    to: Option<String>,
    amount: Option<Box<RawValue>>,
    from: Option<String>,
    /// Calls `transferFrom(from, to, amount)` as this address.
    spender: Option<String>,
    #[serde(default)]
    failed: bool,
    outputs: Option<Vec<OutputBody>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputBody {
    to: String,
    amount: Box<RawValue>,
}

fn transfer_request(body: &[u8]) -> Result<TransferRequest, ControlError> {
    let body: TransferBody = parse_body(body)?;
    let mut request = match (body.outputs, body.to, body.amount) {
        (Some(outputs), None, None) => {
            if outputs.is_empty() {
                return Err(ControlError::new("outputs must not be empty"));
            }
            let outputs = outputs
                .iter()
                .map(|output| {
                    Ok(Output {
                        to: parse_address("to", &output.to)?,
                        amount: parse_amount(&output.amount)?,
                    })
                })
                .collect::<Result<Vec<_>, ControlError>>()?;
            TransferRequest::router(outputs)
        }
        (Some(_), _, _) => return Err(ControlError::new("give either to and amount, or outputs")),
        (None, Some(to), Some(amount)) => TransferRequest::new(parse_address("to", &to)?, parse_amount(&amount)?),
        (None, _, _) => return Err(ControlError::new("to and amount are required (or outputs)")),
    };
    if let Some(from) = body.from {
        request = request.from(parse_address("from", &from)?);
    }
    if let Some(spender) = body.spender {
        request = request.spent_by(parse_address("spender", &spender)?);
    }
    request.failed = body.failed;
    Ok(request)
}

async fn transfer(state: State, body: Bytes) -> HttpResponse {
    let request = match transfer_request(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(&error),
    };
    let submitted = match state.submit(&request) {
        Ok(submitted) => submitted,
        Err(error) => return bad_request(&error),
    };
    let mut answer = serde_json::json!({
        "txid": submitted.txid.as_str(),
        "block": submitted.block,
    });
    if request.router {
        answer["log_indexes"] = serde_json::json!(submitted.log_indexes);
    }
    HttpResponse::Ok().json(answer)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MineBody {
    #[serde(default = "one")]
    count: u64,
}

fn one() -> u64 {
    1
}

async fn mine(state: State, body: Bytes) -> HttpResponse {
    control(parse_body::<MineBody>(&body).and_then(|body| state.mine(body.count)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlocksBody {
    count: u64,
    transfers_per_block: u32,
    #[serde(default)]
    recipients: Vec<String>,
    amount: Option<Box<RawValue>>,
}

fn generate_request(body: &[u8]) -> Result<GenerateRequest, ControlError> {
    let body: BlocksBody = parse_body(body)?;
    Ok(GenerateRequest {
        count: body.count,
        transfers_per_block: body.transfers_per_block,
        recipients: body
            .recipients
            .iter()
            .map(|text| parse_address("recipient", text))
            .collect::<Result<_, _>>()?,
        amount: body.amount.as_deref().map(parse_amount).transpose()?,
    })
}

async fn blocks(state: State, body: Bytes) -> HttpResponse {
    // Sealing 100,000 blocks takes a moment: keep it off the worker's loop.
    let outcome = web::block(move || generate_request(&body).and_then(|request| state.generate(&request))).await;
    match outcome {
        Ok(outcome) => control(outcome),
        Err(_) => bad_request(&ControlError::new("the request was cancelled")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReorgBody {
    depth: u64,
    #[serde(default)]
    drop: Vec<String>,
}

async fn reorg(state: State, body: Bytes) -> HttpResponse {
    let outcome = parse_body::<ReorgBody>(&body).and_then(|body| {
        let drop = body
            .drop
            .iter()
            .map(|text| TxId::parse(text).map_err(|error| ControlError::new(format!("drop {text:?}: {error}"))))
            .collect::<Result<Vec<_>, _>>()?;
        state.reorg(body.depth, &drop)
    });
    control(outcome)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsBody {
    mode: String,
    count: Option<u64>,
    retry_after: Option<u64>,
    stall_ms: Option<u64>,
}

async fn set_faults(state: State, body: Bytes) -> HttpResponse {
    let outcome = parse_body::<FaultsBody>(&body).and_then(|body| {
        let mode = FaultMode::parse(&body.mode).ok_or_else(|| {
            ControlError::new(format!(
                "mode {:?}: use none, http500, http503, http429, http403, garbage, error_json, stall or empty",
                body.mode
            ))
        })?;
        state.set_faults(FaultPlan {
            mode,
            count: body.count,
            retry_after: body.retry_after,
            stall_ms: body.stall_ms.unwrap_or(DEFAULT_STALL_MS),
        })
    });
    match outcome {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "faults": state.status()["faults"] })),
        Err(error) => bad_request(&error),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeBody {
    frozen: bool,
}

async fn freeze(state: State, body: Bytes) -> HttpResponse {
    control(parse_body::<FreezeBody>(&body).map(|body| {
        let heights = state.freeze(body.frozen);
        serde_json::json!({ "frozen": body.frozen, "head": heights.head, "solid": heights.solid })
    }))
}

async fn status(state: State) -> HttpResponse {
    HttpResponse::Ok().json(state.status())
}
