//! The operator dashboard over real HTTP: sign-in with an argon2 password,
//! the session cookie's attributes, CSRF tokens, the sign-in rate limit, and
//! a session any replica honours. (In a real browser: the e2e browser tests.)

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use tronpay_testkit::TestDb;

use super::TestApp;

/// Operator `alice` with password `a long enough secret`.
async fn alice(db: &TestDb) {
    let hash = tronpay_domain::operator::hash_password("a long enough secret").unwrap();
    let mut conn = db.connect().await;
    tronpay_db::operators::create(&mut conn, "alice", &hash)
        .await
        .unwrap()
        .unwrap();
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name=value` of the `Set-Cookie` named `name` in `response`, with its
/// whole header.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response.headers().get_all(SET_COOKIE).iter().find_map(|value| {
        let header = value.to_str().ok()?;
        let pair = header.split(';').next()?.trim();
        pair.starts_with(&format!("{name}="))
            .then(|| (pair.to_owned(), header.to_owned()))
    })
}

/// The value of hidden input `csrf` in `html`.
fn csrf_of(html: &str) -> String {
    let start = html.find(r#"name="csrf" value=""#).expect("a CSRF field") + r#"name="csrf" value=""#.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// `pairs` as an `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Opens the sign-in form: its CSRF token and cookie.
async fn sign_in_form(app: &TestApp) -> (String, String) {
    let response = browser()
        .get(format!("{}/admin/sign-in", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (cookie, _) = set_cookie(&response, "tronpay_sign_in").expect("the sign-in cookie");
    (csrf_of(&response.text().await.unwrap()), cookie)
}

/// Posts the sign-in form.
async fn sign_in(app: &TestApp, name: &str, password: &str, csrf: &str, cookie: &str) -> reqwest::Response {
    browser()
        .post(format!("{}/admin/sign-in", app.base))
        .header(COOKIE, cookie)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&[("name", name), ("password", password), ("csrf", csrf)]))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_signs_in_sees_the_overview_on_any_replica_and_signs_out() {
    let db = TestDb::new().await;
    alice(&db).await;
    let (first, second) = (
        TestApp::start(db.url(), |_| {}).await,
        TestApp::start(db.url(), |_| {}).await,
    );

    // Not signed in: the overview sends you to the sign-in.
    let response = browser().get(format!("{}/admin", first.base)).send().await.unwrap();
    assert_eq!(
        (
            response.status().as_u16(),
            response.headers()[LOCATION].to_str().unwrap()
        ),
        (303, "/admin/sign-in")
    );

    // A wrong password is refused, and says nothing about which part was wrong.
    let (csrf, cookie) = sign_in_form(&first).await;
    let response = sign_in(&first, "alice", "not the password!", &csrf, &cookie).await;
    assert_eq!(response.status(), 401);
    assert!(set_cookie(&response, "tronpay_session").is_none());
    assert!(response.text().await.unwrap().contains("Wrong name or password."));
    let response = sign_in(&first, "nobody", "not the password!", &csrf, &cookie).await;
    assert_eq!(response.status(), 401);

    // Without the form's token (or its cookie) nothing is checked.
    let response = sign_in(&first, "alice", "a long enough secret", "forged", &cookie).await;
    assert_eq!(response.status(), 403);
    let response = sign_in(&first, "alice", "a long enough secret", &csrf, "").await;
    assert_eq!(response.status(), 403);

    // The right password: a session cookie locked down, then the overview.
    let response = sign_in(&first, "alice", "a long enough secret", &csrf, &cookie).await;
    assert_eq!(
        (
            response.status().as_u16(),
            response.headers()[LOCATION].to_str().unwrap()
        ),
        (303, "/admin")
    );
    let (session, header) = set_cookie(&response, "tronpay_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age=28800"] {
        assert!(header.contains(attribute), "{header}");
    }
    // Stored only as a hash.
    let token = session.split_once('=').unwrap().1.to_owned();
    let stored: Vec<String> = db.column("SELECT token_hash FROM operator_sessions").await;
    assert_eq!(stored, [tronpay_domain::operator::token_hash(&token)]);

    // Any replica serves the session.
    for app in [&first, &second] {
        let response = browser()
            .get(format!("{}/admin", app.base))
            .header(COOKIE, &session)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let html = response.text().await.unwrap();
        assert!(
            html.contains("Signed in as alice") && html.contains("Overview"),
            "{html}"
        );
    }

    // Signing out needs the session's CSRF token; then the cookie is dead.
    let html = browser()
        .get(format!("{}/admin", second.base))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let session_csrf = csrf_of(&html);
    let sign_out = |csrf: String| {
        browser()
            .post(format!("{}/admin/sign-out", second.base))
            .header(COOKIE, &session)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(&[("csrf", &csrf)]))
            .send()
    };
    assert_eq!(sign_out(csrf.clone()).await.unwrap().status(), 403);
    assert_eq!(sign_out(session_csrf).await.unwrap().status(), 303);
    let response = browser()
        .get(format!("{}/admin", first.base))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "the session ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_are_limited_across_replicas() {
    let db = TestDb::new().await;
    alice(&db).await;
    let (first, second) = (
        TestApp::start(db.url(), |_| {}).await,
        TestApp::start(db.url(), |_| {}).await,
    );
    let limit = tronpay_api::admin::MAX_FAILURES_PER_NAME;
    for attempt in 0..limit {
        let app = if attempt % 2 == 0 { &first } else { &second };
        let (csrf, cookie) = sign_in_form(app).await;
        assert_eq!(
            sign_in(app, "alice", "wrong password!!", &csrf, &cookie).await.status(),
            401
        );
    }
    // Now even the right password waits.
    let (csrf, cookie) = sign_in_form(&second).await;
    let response = sign_in(&second, "alice", "a long enough secret", &csrf, &cookie).await;
    assert_eq!(response.status(), 429);
    assert!(response.text().await.unwrap().contains("Too many failed sign-ins"));
    // Until the failures age out.
    db.client()
        .await
        .batch_execute("UPDATE operator_sign_in_failures SET at = at - interval '1 hour'")
        .await
        .unwrap();
    let response = sign_in(&second, "alice", "a long enough secret", &csrf, &cookie).await;
    assert_eq!(response.status(), 303);
}

/// Signs `alice` in on `app`: her session cookie and its CSRF token.
async fn alice_signed_in(app: &TestApp) -> (String, String) {
    let (csrf, cookie) = sign_in_form(app).await;
    let response = sign_in(app, "alice", "a long enough secret", &csrf, &cookie).await;
    assert_eq!(response.status(), 303);
    let (session, _) = set_cookie(&response, "tronpay_session").unwrap();
    let html = get(app, "/admin", &session).await.1;
    (session, csrf_of(&html))
}

async fn get(app: &TestApp, path: &str, session: &str) -> (u16, String) {
    let response = browser()
        .get(format!("{}{path}", app.base))
        .header(COOKIE, session)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn post(app: &TestApp, path: &str, session: &str, pairs: &[(&str, &str)]) -> reqwest::Response {
    browser()
        .post(format!("{}{path}", app.base))
        .header(COOKIE, session)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_finds_cancels_and_redelivers_with_the_audit_trail_naming_them() {
    let db = TestDb::new().await;
    alice(&db).await;
    let key = db.api_key("shop", super::v1::READ_WRITE).await;
    let app = TestApp::start(db.url(), |settings| settings.callback_allow_private = true).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let made = app
            .v1_post(
                "/v1/payments",
                &key,
                &serde_json::json!({
                    "order_id": format!("dash-{n}"), "amount": "4.5", "address": super::ADDRESS,
                    "notify_url": "http://127.0.0.1:9/hook",
                    "notify_events": ["payment.completed", "payment.cancelled"],
                }),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.text);
        ids.push(made.body["id"].as_str().unwrap().to_owned());
    }
    let (session, csrf) = alice_signed_in(&app).await;

    // The list, a search by order id, a filter, and a bad filter.
    let (status, html) = get(&app, "/admin/payments", &session).await;
    assert_eq!(status, 200);
    assert!((0..3).all(|n| html.contains(&format!("dash-{n}"))), "{html}");
    let (_, html) = get(&app, "/admin/payments?q=dash-1", &session).await;
    assert!(html.contains("dash-1") && !html.contains("dash-2"), "{html}");
    let (_, html) = get(&app, &format!("/admin/payments?q={}", super::ADDRESS), &session).await;
    assert!(html.contains("dash-0") && html.contains("dash-2"), "{html}");
    let (_, html) = get(&app, "/admin/payments?status=completed", &session).await;
    assert!(html.contains("No payments match."), "{html}");
    let (status, html) = get(&app, "/admin/payments?from=yesterday", &session).await;
    assert!(status == 200 && html.contains("from is a date"), "{html}");

    // 50 a page: 49 older payments (made in SQL, a minute apart) fill the
    // first page with the three above; "Older payments" leads to the rest,
    // keeping the filter.
    db.client()
        .await
        .batch_execute(&format!(
            "INSERT INTO payments (id, wallet_address, expected_amount_usdt, callback_url, order_id, status, created_at, \
               last_checked_timestamp, callback_attempts, callback_success, expires_at) \
             SELECT gen_random_uuid()::text, '{}', 1, 'http://127.0.0.1:9/hook', 'old-' || n, 'pending', \
               (now() AT TIME ZONE 'utc') - n * interval '1 minute', 0, 0, false, \
               (now() AT TIME ZONE 'utc') + interval '1 day' \
             FROM generate_series(1, 49) AS n",
            super::ADDRESS
        ))
        .await
        .unwrap();
    let (_, html) = get(&app, "/admin/payments?status=pending", &session).await;
    let rows = |html: &str| html.matches("<a href=\"/admin/payments/").count();
    assert_eq!(rows(&html), 50, "{html}");
    assert!(!html.contains(">old-48<") && html.contains(">old-47<"), "{html}");
    let start = html.find("href=\"/admin/payments?").expect("an Older payments link") + "href=\"".len();
    let next = html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(next.contains("status=pending") && next.contains("before="), "{next}");
    let (_, older) = get(&app, &next, &session).await;
    assert_eq!(rows(&older), 2, "{older}");
    assert!(older.contains(">old-48<") && older.contains(">old-49<"), "{older}");
    assert!(!older.contains("Older payments"), "{older}");

    // Cancel: refused without the token, done with it, and on the trail.
    let id = &ids[1];
    let path = format!("/admin/payments/{id}/cancel");
    let refused = post(&app, &path, &session, &[("reason", "no token")]).await;
    assert_eq!(refused.status(), 400, "a form without its csrf field does not parse");
    let refused = post(&app, &path, &session, &[("csrf", "forged"), ("reason", "x")]).await;
    assert_eq!(refused.status(), 403);
    let done = post(&app, &path, &session, &[("csrf", &csrf), ("reason", "buyer asked")]).await;
    assert_eq!(done.status(), 303);
    let (_, html) = get(&app, &format!("/admin/payments/{id}?done=cancelled"), &session).await;
    assert!(
        html.contains("Payment cancelled by operator alice: buyer asked"),
        "{html}"
    );
    assert!(html.contains(r#"<dd id="payment-status">failed</dd>"#), "{html}");
    let trail: Vec<String> = db
        .column(&format!(
            "SELECT message FROM payment_logs WHERE payment_id = '{id}' AND event_type = 'cancelled'"
        ))
        .await;
    assert_eq!(trail, ["Payment cancelled by operator alice: buyer asked"]);
    // The payment.cancelled webhook was queued, as for the API's cancel.
    let deliveries: Vec<String> = db
        .column(&format!(
            "SELECT id::text FROM webhook_deliveries WHERE payment_id = '{id}'"
        ))
        .await;
    assert_eq!(deliveries.len(), 1);

    // A dead delivery sent again, with the operator named.
    db.client()
        .await
        .batch_execute(&format!(
            "UPDATE webhook_deliveries SET status = 'dead' WHERE id = '{}'",
            deliveries[0]
        ))
        .await
        .unwrap();
    let again = post(
        &app,
        &format!("/admin/deliveries/{}/redeliver", deliveries[0]),
        &session,
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(again.status(), 303);
    let status: Vec<String> = db
        .column(&format!(
            "SELECT status FROM webhook_deliveries WHERE id = '{}'",
            deliveries[0]
        ))
        .await;
    assert_ne!(status, ["dead"]);
    let logged: Vec<String> = db
        .column(&format!(
            "SELECT message FROM payment_logs WHERE payment_id = '{id}' ORDER BY id DESC LIMIT 1"
        ))
        .await;
    assert!(logged[0].contains("operator alice"), "{logged:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_assigns_an_unmatched_transfer_and_the_payment_completes() {
    let db = TestDb::new().await;
    alice(&db).await;
    let key = db.api_key("shop", super::v1::READ_WRITE).await;
    let app = TestApp::start(db.url(), |_| {}).await;
    let made = app
        .v1_post(
            "/v1/payments",
            &key,
            &serde_json::json!({ "order_id": "assign-me", "amount": "7", "address": super::ADDRESS }),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let id = made.body["id"].as_str().unwrap().to_owned();
    // A final transfer no payment counted (sent from another address, say).
    let txid = "cd".repeat(32);
    db.client()
        .await
        .batch_execute(&format!(
            "INSERT INTO transfers (txid, log_index, block_number, block_time, from_address, to_address, amount_usdt, \
               status, seen_at, confirmed_at, match_kind, applied_at) \
             VALUES ('{txid}', 3, 700, now(), 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7', 'TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC', \
               7, 'confirmed', now(), now(), 'unmatched', now())"
        ))
        .await
        .unwrap();
    // And one that paid part of the payment (its credit is not applied here:
    // the row only shows how the page lists it).
    let partial = "ef".repeat(32);
    db.client()
        .await
        .batch_execute(&format!(
            "INSERT INTO transfers (txid, log_index, block_number, block_time, from_address, to_address, amount_usdt, \
               status, seen_at, confirmed_at, payment_id, match_kind) \
             VALUES ('{partial}', 0, 650, now(), 'TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7', 'TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC', \
               2, 'confirmed', now(), now(), '{id}', 'partial')"
        ))
        .await
        .unwrap();
    let (session, csrf) = alice_signed_in(&app).await;
    let (status, html) = get(&app, "/admin/transfers", &session).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("{txid}:3")) && html.contains("unmatched") && !html.contains(&partial),
        "{html}"
    );
    let (_, html) = get(&app, "/admin/transfers?view=partial", &session).await;
    assert!(
        html.contains(&format!("{partial}:0"))
            && html.contains(&format!(r#"<a href="/admin/payments/{id}">partial</a>"#))
            && !html.contains(&txid)
            && !html.contains("Assign</button>"),
        "{html}"
    );
    let path = format!("/admin/transfers/{txid}/3/assign");

    // Not without the confirmation, nor without the CSRF token.
    let unconfirmed = post(&app, &path, &session, &[("csrf", &csrf), ("payment_id", &id)]).await;
    let location = unconfirmed.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/admin/transfers?problem="), "{location}");
    let forged = post(
        &app,
        &path,
        &session,
        &[("csrf", "x"), ("payment_id", &id), ("confirm", "yes")],
    )
    .await;
    assert_eq!(forged.status(), 403);
    let body = app.v1_get(&format!("/v1/payments/{id}"), &key).await.body;
    assert_eq!(body["status"], "pending");

    let done = post(
        &app,
        &path,
        &session,
        &[("csrf", &csrf), ("payment_id", &id), ("confirm", "yes")],
    )
    .await;
    assert_eq!(done.status(), 303);
    assert_eq!(
        done.headers()[LOCATION].to_str().unwrap(),
        format!("/admin/payments/{id}")
    );
    let body = app.v1_get(&format!("/v1/payments/{id}"), &key).await.body;
    assert_eq!(
        (body["status"].as_str(), body["received_amount"].as_str()),
        (Some("completed"), Some("7"))
    );
    let (_, html) = get(&app, &format!("/admin/payments/{id}"), &session).await;
    assert!(html.contains("assigned by operator alice"), "{html}");
    // Today's bar of the overview's volume chart is this payment.
    let (_, html) = get(&app, "/admin", &session).await;
    assert!(
        html.contains("7 USDT in 30 days") && html.contains(r#"y="0" width="16" height="160"><title>"#),
        "{html}"
    );

    // Twice is refused with the reason, nothing credited twice.
    let again = post(
        &app,
        &path,
        &session,
        &[("csrf", &csrf), ("payment_id", &id), ("confirm", "yes")],
    )
    .await;
    let location = again.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(location.contains("already"), "{location}");
    let body = app.v1_get(&format!("/v1/payments/{id}"), &key).await.body;
    assert_eq!(body["received_amount"], "7");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_retries_dead_deliveries_one_or_all_from_the_webhooks_page() {
    let db = TestDb::new().await;
    alice(&db).await;
    let key = db.api_key("shop", super::v1::READ_WRITE).await;
    let app = TestApp::start(db.url(), |settings| settings.callback_allow_private = true).await;
    let (session, csrf) = alice_signed_in(&app).await;
    let (_, html) = get(&app, "/admin/webhooks", &session).await;
    assert!(html.contains(r#"<p id="no-dead">None.</p>"#), "{html}");

    // Two payments cancelled from the dashboard: each queues a
    // payment.cancelled delivery, which we make dead after a 503.
    let mut ids = Vec::new();
    for n in 0..2 {
        let made = app
            .v1_post(
                "/v1/payments",
                &key,
                &serde_json::json!({
                    "order_id": format!("dead-{n}"), "amount": "1", "address": super::ADDRESS,
                    "notify_url": "http://127.0.0.1:9/hook", "notify_events": ["payment.cancelled"],
                }),
            )
            .await;
        assert_eq!(made.status, 201, "{}", made.text);
        let id = made.body["id"].as_str().unwrap().to_owned();
        let cancel = post(
            &app,
            &format!("/admin/payments/{id}/cancel"),
            &session,
            &[("csrf", &csrf)],
        )
        .await;
        assert_eq!(cancel.status(), 303);
        ids.push(id);
    }
    db.client()
        .await
        .batch_execute(
            "UPDATE webhook_deliveries SET status = 'dead', attempts = 8, last_status = 503, \
               last_attempt_at = now() AT TIME ZONE 'utc'; \
             INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, http_status, response_body, outcome) \
               SELECT id, 8, now() AT TIME ZONE 'utc', 12, 503, 'receiver <b>down</b> for maintenance', 'dead' \
               FROM webhook_deliveries",
        )
        .await
        .unwrap();
    let deliveries: Vec<String> = db
        .column(&format!(
            "SELECT id::text FROM webhook_deliveries WHERE payment_id = '{}'",
            ids[0]
        ))
        .await;

    // Listed, with the receiver's status and the start of its answer (as text).
    let (status, html) = get(&app, "/admin/webhooks", &session).await;
    assert_eq!(status, 200);
    assert!(ids.iter().all(|id| html.contains(id.as_str())), "{html}");
    assert!(
        html.contains("HTTP 503")
            && html.contains("receiver &#60;b&#62;down&#60;/b&#62; for maintenance")
            && !html.contains("<b>down"),
        "{html}"
    );
    let (_, overview) = get(&app, "/admin", &session).await;
    assert!(overview.contains(r#"<span id="webhook-dead">2</span>"#), "{overview}");

    // Refused without the session's token.
    let forged = post(
        &app,
        "/admin/webhooks/retry",
        &session,
        &[("csrf", "forged"), ("delivery_id", &deliveries[0])],
    )
    .await;
    assert_eq!(forged.status(), 403);

    // One: back in line with an attempt due, on the trail with the operator.
    let one = post(
        &app,
        "/admin/webhooks/retry",
        &session,
        &[("csrf", &csrf), ("delivery_id", &deliveries[0])],
    )
    .await;
    assert_eq!(one.headers()[LOCATION].to_str().unwrap(), "/admin/webhooks?retried=1");
    let statuses: Vec<String> = db.column("SELECT status FROM webhook_deliveries").await;
    assert_eq!(
        statuses.iter().filter(|status| *status == "pending").count(),
        1,
        "{statuses:?}"
    );
    let queued: Vec<i64> = db
        .column(&format!(
            "SELECT count(*) FROM outbox WHERE routing_key = 'callback.due' AND payload->>'delivery_id' = '{}'",
            deliveries[0]
        ))
        .await;
    assert_eq!(
        queued,
        [2],
        "the cancel's callback.due and the retry's are in the outbox"
    );
    let logged: Vec<String> = db
        .column(&format!(
            "SELECT message FROM payment_logs WHERE payment_id = '{}' ORDER BY id DESC LIMIT 1",
            ids[0]
        ))
        .await;
    assert_eq!(
        logged,
        ["Callback payment.cancelled retried at the request of operator alice"]
    );

    // All: the other one (the first is pending now).
    let all = post(&app, "/admin/webhooks/retry", &session, &[("csrf", &csrf)]).await;
    assert_eq!(all.headers()[LOCATION].to_str().unwrap(), "/admin/webhooks?retried=1");
    let (_, html) = get(&app, "/admin/webhooks?retried=1", &session).await;
    assert!(
        html.contains("1 delivery is queued again") && html.contains(r#"id="no-dead""#),
        "{html}"
    );
    let statuses: Vec<String> = db.column("SELECT status FROM webhook_deliveries").await;
    assert_eq!(statuses, ["pending", "pending"]);

    let actions: Vec<String> = db
        .column("SELECT operator || ': ' || action || ' ' || subject FROM operator_actions ORDER BY id")
        .await;
    assert_eq!(
        actions,
        [
            format!("alice: cancel payment {}", ids[0]),
            format!("alice: cancel payment {}", ids[1]),
            format!("alice: retry delivery {}", deliveries[0]),
            "alice: retry dead deliveries 1 deliveries".to_owned(),
        ]
    );
    let (_, overview) = get(&app, "/admin", &session).await;
    assert!(overview.contains("retry dead deliveries"), "{overview}");
}

/// The create-key form's fields: `scope` once per scope.
fn key_form<'a>(csrf: &'a str, name: &'a str, scopes: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![("csrf", csrf), ("name", name)];
    pairs.extend(scopes.iter().map(|scope| ("scope", *scope)));
    pairs
}

/// The key the keys page shows once, if it shows one.
fn new_key_of(html: &str) -> Option<String> {
    let marker = r#"id="new-key" readonly value=""#;
    let start = html.find(marker)? + marker.len();
    html[start..].split('"').next().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_creates_an_api_key_shown_once_and_revokes_it() {
    let db = TestDb::new().await;
    alice(&db).await;
    let app = TestApp::start(db.url(), |_| {}).await;
    let (session, csrf) = alice_signed_in(&app).await;
    let (status, html) = get(&app, "/admin/keys", &session).await;
    assert!(status == 200 && html.contains("No API keys yet."), "{html}");

    // Refused: a forged token; no name; no scope.
    let forged = post(
        &app,
        "/admin/keys",
        &session,
        &key_form("forged", "shop", &["payments:read"]),
    )
    .await;
    assert_eq!(forged.status(), 403);
    let csrf = csrf.as_str();
    for (name, scopes) in [
        ("  ", &["payments:read"][..]),
        ("shop", &[][..]),
        ("shop", &["everything"][..]),
    ] {
        let refused = post(&app, "/admin/keys", &session, &key_form(csrf, name, scopes)).await;
        assert_eq!(refused.status(), 400, "{name:?} {scopes:?}");
        assert!(new_key_of(&refused.text().await.unwrap()).is_none());
    }
    let stored: Vec<i64> = db.column("SELECT count(*) FROM api_keys").await;
    assert_eq!(stored, [0]);

    // Created with two scopes (the second ticked twice): shown once, stored
    // only as a hash, and it works.
    let created = post(
        &app,
        "/admin/keys",
        &session,
        &key_form(
            csrf,
            "shop backend",
            &["payments:read", "payments:write", "payments:write"],
        ),
    )
    .await;
    assert_eq!(created.status(), 200);
    let html = created.text().await.unwrap();
    let key = new_key_of(&html).expect("the new key on the page");
    let parsed = tronpay_domain::ApiKeyText::parse(&key).expect("a tronpay key");
    let rows: Vec<String> = db
        .column("SELECT name || ' ' || array_to_string(scopes, ',') || ' ' || secret_hash FROM api_keys")
        .await;
    assert_eq!(
        rows,
        [format!("shop backend payments:read,payments:write {}", parsed.hash())]
    );
    assert!(!rows[0].contains(&key));
    assert_eq!(app.v1_get("/v1/payments", &key).await.status, 200);
    let (_, html) = get(&app, "/admin/keys", &session).await;
    assert!(
        new_key_of(&html).is_none() && !html.contains(&key) && html.contains(&format!("tpk_{}", parsed.prefix())),
        "{html}"
    );

    // Revoked: refused by this replica at once; a second revoke says so.
    let path = format!("/admin/keys/{}/revoke", parsed.prefix());
    assert_eq!(post(&app, &path, &session, &[("csrf", "forged")]).await.status(), 403);
    let revoked = post(&app, &path, &session, &[("csrf", csrf)]).await;
    assert_eq!(
        revoked.headers()[LOCATION].to_str().unwrap(),
        "/admin/keys?done=revoked"
    );
    assert_eq!(app.v1_get("/v1/payments", &key).await.status, 401);
    let again = post(&app, &path, &session, &[("csrf", csrf)]).await;
    assert_eq!(again.headers()[LOCATION].to_str().unwrap(), "/admin/keys?done=already");
    let unknown = post(&app, "/admin/keys/0123456789/revoke", &session, &[("csrf", csrf)]).await;
    assert_eq!(unknown.status(), 404);

    let actions: Vec<String> = db
        .column("SELECT action || ' ' || subject FROM operator_actions ORDER BY id")
        .await;
    assert_eq!(
        actions,
        [
            format!(
                "create API key tpk_{} \"shop backend\" (payments:read, payments:write)",
                parsed.prefix()
            ),
            format!("revoke API key tpk_{}", parsed.prefix()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_settings_page_lists_the_running_settings_without_secrets() {
    let db = TestDb::new().await;
    alice(&db).await;
    let xpub = super::v1::receiving::XPUB;
    let app = TestApp::start(db.url(), |settings| {
        settings.address_mode = "xpub".into();
        settings.xpub = xpub.into();
        settings.payment_ttl_seconds = 1800;
    })
    .await;
    let (status, _) = get(&app, "/admin/settings", "").await;
    assert_eq!(status, 303, "not without a session");
    let (session, _) = alice_signed_in(&app).await;
    let (status, html) = get(&app, "/admin/settings", &session).await;
    assert_eq!(status, 200);
    for shown in [
        "<code>ADDRESS_MODE</code></td><td><code>xpub</code>",
        "<code>PAYMENT_TTL_SECONDS</code></td><td><code>1800</code>",
        &format!(
            "<code>XPUB</code></td><td><code>{}…{}</code>",
            &xpub[..12],
            &xpub[xpub.len() - 4..]
        ),
    ] {
        assert!(html.contains(shown), "{shown} in {html}");
    }
    assert!(!html.contains(xpub), "the whole XPUB is not on the page");
}
