//! The checkout page `/pay/{id}` and its status stream over real HTTP: what a
//! buyer sees in each state and language, what the page must never show, the
//! headers that keep it safe, and live status across two replicas. (The same
//! pages in a real browser: the e2e browser tests.)

use std::time::Duration;

use serde_json::{Value, json};
use tronpay_testkit::TestDb;

use super::{ADDRESS, Answer, READ_WRITE, TestApp};

/// A v1 payment with everything a merchant may attach, some of it private.
async fn create(app: &TestApp, key: &str, order: &str) -> Value {
    let made = app
        .call(
            reqwest::Method::POST,
            "/v1/payments",
            Some(key),
            &[("idempotency-key", &format!("private-idempotency-key-{order}"))],
            Some(
                json!({
                    "order_id": order,
                    "amount": "12.5",
                    "address": ADDRESS,
                    "notify_url": "https://93.184.216.34/private-hook",
                    "redirect_url": "https://shop.example.com/thanks",
                    "metadata": { "note": "private-merchant-note" },
                })
                .to_string(),
            ),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    made.body
}

async fn page(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Answer {
    app.call(reqwest::Method::GET, path, None, headers, None).await
}

/// The path of the payment's checkout URL (`http://…/pay/{id}`).
fn checkout_path(payment: &Value) -> String {
    let url = payment["checkout_url"].as_str().unwrap();
    format!("/pay/{}", url.rsplit_once("/pay/").unwrap().1)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_checkout_page_shows_what_to_pay_in_four_languages_and_nothing_private() {
    let db = TestDb::new().await;
    let key = db.api_key("shop", READ_WRITE).await;
    let app = TestApp::start(db.url(), |_| {}).await;
    let payment = create(&app, &key, "order-77").await;
    let path = checkout_path(&payment);

    let answer = page(&app, &path, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.content_type, "text/html; charset=utf-8");
    let policy = answer.headers["content-security-policy"].to_str().unwrap();
    assert_eq!(policy, tronpay_api::checkout::CONTENT_SECURITY_POLICY);
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe"),
        "{policy}"
    );
    assert_eq!(answer.headers["cache-control"], "no-store");
    let html = &answer.text;
    for shown in [
        "12.5",
        ADDRESS,
        "order-77",
        "USDT on TRON (TRC-20)",
        "Do not send from an exchange",
        "Waiting for your payment",
        r#"<html lang="en">"#,
        r#"<script src="/assets/checkout.js" defer></script>"#,
        r#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#,
    ] {
        assert!(html.contains(shown), "missing {shown:?} in {html}");
    }
    // No inline script or style: the policy would block them.
    assert!(!html.contains("<script>") && !html.contains("style="), "{html}");
    for private in [
        "private-hook",
        "93.184.216.34",
        "private-merchant-note",
        "private-idempotency-key",
        "tpk_",
    ] {
        assert!(!html.contains(private), "{private:?} leaked into the page");
    }

    // The QR code is the address's, drawn on the server.
    let expected = qrcode::QrCode::with_error_correction_level(ADDRESS.as_bytes(), qrcode::EcLevel::M)
        .unwrap()
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    assert!(html.contains(&expected), "the QR code is not the address's");

    // Each language, by ?lang= or by Accept-Language.
    for (query, accept, lang, text) in [
        ("?lang=zh", "", "zh-CN", "应付金额"),
        ("", "ru-RU,ru;q=0.9,en;q=0.5", "ru", "Сумма к оплате"),
        ("", "fr, es;q=0.8", "es", "Importe a pagar"),
        ("?lang=en", "es", "en", "Amount to pay"),
    ] {
        let headers: &[(&str, &str)] = if accept.is_empty() {
            &[]
        } else {
            &[("accept-language", accept)]
        };
        let answer = page(&app, &format!("{path}{query}"), headers).await;
        assert_eq!(answer.status, 200);
        assert!(
            answer.text.contains(&format!(r#"<html lang="{lang}">"#)) && answer.text.contains(text),
            "{query} {accept}: {}",
            answer.text
        );
    }

    // Unknown or malformed ids: a friendly page, not a stack trace.
    for unknown in ["/pay/no-such-payment", "/pay/0b6f0d6c-1c2d-4c3e-9f00-000000000000"] {
        let answer = page(&app, unknown, &[("accept-language", "es")]).await;
        assert_eq!(answer.status, 404, "{unknown}");
        assert_eq!(answer.content_type, "text/html; charset=utf-8");
        assert!(answer.text.contains("Pago no encontrado"), "{}", answer.text);
    }

    // The stylesheet and script come from here; nothing else does.
    let css = page(&app, "/assets/tronpay.css", &[]).await;
    assert_eq!(
        (css.status, css.content_type.as_str()),
        (200, "text/css; charset=utf-8")
    );
    let script = page(&app, "/assets/checkout.js", &[]).await;
    assert_eq!(script.status, 200);
    assert!(script.text.contains("EventSource"));
    assert_eq!(page(&app, "/assets/../Cargo.toml", &[]).await.status, 404);
    assert_eq!(
        page(&app, "/assets/favicon.svg", &[]).await.content_type,
        "image/svg+xml"
    );
    assert_eq!(page(&app, "/assets/nothing.js", &[]).await.status, 404);
}

/// A transfer of the payment seen at `block` (not final), and a chain whose
/// head is `head` with `final` the last final block.
async fn seen_at(db: &TestDb, payment_id: &str, block: i64, head: i64, last_final: i64) {
    db.client()
        .await
        .batch_execute(&format!(
            "INSERT INTO transfers (txid, log_index, block_number, block_time, from_address, to_address, amount_usdt, \
               status, seen_at, detected_payment_id) \
             VALUES ('{txid}', 0, {block}, now(), 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7', '{ADDRESS}', 12.5, 'detected', \
               now(), '{payment_id}'); \
             INSERT INTO chain_state (id, cursor_block, tip_block, head_block, final_block, updated_at) \
             VALUES (1, {last_final}, {head}, {head}, {last_final}, now()) \
             ON CONFLICT (id) DO UPDATE SET head_block = EXCLUDED.head_block, final_block = EXCLUDED.final_block",
            txid = "ab".repeat(32),
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_tells_the_buyer_each_state() {
    let db = TestDb::new().await;
    let key = db.api_key("shop", READ_WRITE).await;
    let app = TestApp::start(db.url(), |_| {}).await;
    let sql = db.client().await;
    let text_of = async |payment: &Value| page(&app, &checkout_path(payment), &[]).await.text;

    // Partly paid: what is still due.
    let partial = create(&app, &key, "partial").await;
    sql.batch_execute(&format!(
        "UPDATE payments SET received_amount_usdt = 5 WHERE id = '{}'",
        partial["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert!(text_of(&partial).await.contains("Partly paid: 7.5 USDT still to pay"));

    // Seen in block 1000, head 1002, final 983: the 3rd of 20 blocks.
    let confirming = create(&app, &key, "confirming").await;
    seen_at(&db, confirming["id"].as_str().unwrap(), 1000, 1002, 983).await;
    assert!(text_of(&confirming).await.contains("Confirming: 3 of 20 blocks"));

    // Ended: the status, and no address or QR code to pay to any more.
    let cancelled = create(&app, &key, "cancelled").await;
    let id = cancelled["id"].as_str().unwrap();
    let answer = app
        .v1_post(&format!("/v1/payments/{id}/cancel"), &key, &json!({}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let html = text_of(&cancelled).await;
    assert!(html.contains("This payment was cancelled."), "{html}");
    assert!(
        !html.contains("<svg") && !html.contains(ADDRESS) && !html.contains("refresh"),
        "{html}"
    );

    let expired = create(&app, &key, "expired").await;
    sql.batch_execute(&format!(
        "UPDATE payments SET status = 'expired' WHERE id = '{}'",
        expired["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert!(text_of(&expired).await.contains("This payment has expired."));

    // Paid: the way back to the shop (and, without JavaScript, a redirect).
    let paid = create(&app, &key, "paid").await;
    sql.batch_execute(&format!(
        "UPDATE payments SET status = 'completed', completed_at = now(), received_amount_usdt = 12.5 WHERE id = '{}'",
        paid["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    let html = text_of(&paid).await;
    assert!(html.contains("Paid. Thank you!"), "{html}");
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="3;url=https://shop.example.com/thanks">"#),
        "{html}"
    );
}

/// Reads server-sent events from `response` until one with data arrives;
/// returns its JSON data.
async fn next_event(response: &mut reqwest::Response, buffer: &mut String) -> Option<Value> {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|line| line.strip_prefix("data: ")) {
                assert!(frame.starts_with("event: status\n"), "{frame}");
                return Some(serde_json::from_str(data).unwrap());
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("no event within 10 s")
            .unwrap()?;
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_on_one_replica_sees_what_another_replica_applied() {
    let db = TestDb::new().await;
    let key = db.api_key("shop", READ_WRITE).await;
    let (watching, applying) = (
        TestApp::start(db.url(), |_| {}).await,
        TestApp::start(db.url(), |_| {}).await,
    );
    let payment = create(&applying, &key, "streamed").await;
    let id = payment["id"].as_str().unwrap();

    // No key needed; unknown ids are a 404 problem.
    let unknown = watching
        .call(reqwest::Method::GET, "/v1/payments/nope/stream", None, &[], None)
        .await;
    assert_eq!(unknown.status, 404);

    let mut response = watching
        .client
        .get(format!("{}/v1/payments/{id}/stream?lang=es", watching.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut buffer = String::new();
    let first = next_event(&mut response, &mut buffer).await.unwrap();
    assert_eq!(
        (
            first["state"].as_str(),
            first["text"].as_str(),
            first["final"].as_bool()
        ),
        (Some("waiting"), Some("Esperando su pago"), Some(false)),
        "{first}"
    );

    seen_at(&db, id, 500, 505, 486).await;
    let confirming = next_event(&mut response, &mut buffer).await.unwrap();
    assert_eq!(
        (
            confirming["state"].as_str(),
            confirming["confirmations"].as_u64(),
            confirming["required"].as_u64()
        ),
        (Some("confirming"), Some(6), Some(20)),
        "{confirming}"
    );

    // The other replica cancels it: this one's stream says so, and ends.
    let cancelled = applying
        .v1_post(&format!("/v1/payments/{id}/cancel"), &key, &json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    let last = next_event(&mut response, &mut buffer).await.unwrap();
    assert_eq!(
        (last["state"].as_str(), last["final"].as_bool()),
        (Some("cancelled"), Some(true)),
        "{last}"
    );
    assert!(
        next_event(&mut response, &mut buffer).await.is_none(),
        "the stream ends"
    );
    // Nothing private in any event.
    for event in [&first, &confirming, &last] {
        let text = event.to_string();
        assert!(!text.contains("private") && !text.contains(ADDRESS), "{text}");
    }
}
