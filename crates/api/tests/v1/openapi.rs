//! `/openapi.json` and the routes stay in step: every route is documented,
//! every documented operation answers; `/docs` renders offline.

use serde_json::Value;

use super::super::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn every_route_is_documented_and_every_documented_route_answers() {
    let (db, app) = TestApp::fresh(|_| {}).await;
    let key = db
        .api_key("all", &["payments:read", "payments:write", "operator"])
        .await;
    let answer = app.call(reqwest::Method::GET, "/openapi.json", None, &[], None).await;
    assert_eq!(answer.status, 200);
    let document = answer.body;
    assert_eq!(document["openapi"], "3.1.0");

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = tronpay_api::routes::endpoints()
        .iter()
        .filter(|endpoint| endpoint.documented)
        .map(|endpoint| (endpoint.method.to_string(), endpoint.path.to_owned()))
        .collect();
    served.sort();
    assert_eq!(documented, served, "the document lists exactly the routes served");

    for (method, path) in &documented {
        let concrete = path
            .split('/')
            .map(|segment| match segment {
                "{log_index}" => "0",
                segment if segment.starts_with('{') => "00000000-0000-4000-8000-000000000000",
                segment => segment,
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = (method == reqwest::Method::POST).then(|| "{}".to_owned());
        let answer = app.call(method.clone(), &concrete, Some(&key), &[], body).await;
        assert_ne!(answer.status, 405, "{method} {concrete}: {}", answer.text);
        assert_ne!(answer.body["code"], "route_not_found", "{method} {concrete}");
        assert!(
            answer.status != 404 || answer.body["error"] != Value::String(format!("Not found: {concrete}")),
            "{method} {concrete} has no route"
        );
    }

    // Every operation says who may call it and documents its errors; each
    // has its own operationId; links name operations that exist.
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} twice");
            if path.starts_with("/v1/") {
                for status in ["401", "403", "429"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{method} {path} documents {status}"
                    );
                }
                assert!(operation["security"].is_array(), "{method} {path} names its scope");
                assert!(
                    operation["responses"]
                        .as_object()
                        .unwrap()
                        .keys()
                        .any(|status| status.starts_with('4')),
                    "{method} {path} documents its errors"
                );
            }
        }
    }
    let links = document["paths"]["/v1/payments"]["post"]["responses"]["201"]["links"]
        .as_object()
        .unwrap();
    assert!(links.len() >= 5);
    for link in links.values() {
        assert!(operation_ids.contains(link["operationId"].as_str().unwrap()), "{link}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_page_is_offline_html_under_a_strict_policy() {
    let (_db, app) = TestApp::fresh(|_| {}).await;
    let answer = app.call(reqwest::Method::GET, "/docs", None, &[], None).await;
    assert_eq!(answer.status, 200);
    assert!(answer.content_type.starts_with("text/html"));
    let policy = answer.headers.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(policy.starts_with("default-src 'none'; style-src 'sha256-"), "{policy}");
    assert!(answer.text.contains("POST</code> <code>&#x2f;v1&#x2f;payments</code>"));
    assert!(answer.text.contains("id=\"problem-idempotency_key_reused\""));
    assert!(!answer.text.contains("<script"));
}
