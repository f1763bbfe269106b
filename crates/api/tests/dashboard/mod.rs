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
