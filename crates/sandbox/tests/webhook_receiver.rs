//! The built-in webhook receiver checks Standard Webhooks signatures.

// Integration tests: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tronpay_domain::signing::WebhookSecret;
use tronpay_sandbox::{Sandbox, SandboxConfig};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test(flavor = "multi_thread")]
async fn received_webhooks_are_listed_with_their_verdict() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sandbox = Sandbox::start(SandboxConfig {
        webhook_secret: Some(SECRET.into()),
        ..SandboxConfig::ephemeral()
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let body = r#"{"payment_id":"p1","event":"payment.completed"}"#;
    let timestamp = chrono::Utc::now().timestamp();
    let good = WebhookSecret::parse(SECRET)
        .unwrap()
        .sign("msg_1", timestamp, body.as_bytes());
    let other = WebhookSecret::generate()
        .unwrap()
        .sign("msg_2", timestamp, body.as_bytes());
    let rotated = WebhookSecret::parse(SECRET)
        .unwrap()
        .sign("msg_3", timestamp, body.as_bytes());
    // msg_4 carries msg_1's signature: it does not cover msg_4's id.
    for (id, signature) in [
        ("msg_1", good.clone()),
        ("msg_2", other),
        ("msg_3", format!("v1,bogus {rotated}")),
        ("msg_4", good),
    ] {
        let response = client
            .post(format!("{}/sandbox/webhooks/shop", sandbox.url()))
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let listed = tronpay_testkit::get_json(&format!("{}/sandbox/webhooks", sandbox.url())).await;
    assert_eq!(listed["count"], 4);
    let verdicts: Vec<_> = listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hook| (hook["webhook_id"].clone(), hook["verified"].clone()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (serde_json::json!("msg_1"), serde_json::json!(true)),
            (serde_json::json!("msg_2"), serde_json::json!(false)),
            (serde_json::json!("msg_3"), serde_json::json!(true)),
            (serde_json::json!("msg_4"), serde_json::json!(false)),
        ]
    );
    assert_eq!(listed["webhooks"][0]["body"]["payment_id"], "p1");
    assert_eq!(listed["webhooks"][0]["path"], "/sandbox/webhooks/shop");
}
