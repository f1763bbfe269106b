//! A webhook receiver for tests: records every request and answers as
//! scripted (a status, a redirect, a hang).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// 429 or 503 with `Retry-After` in seconds.
    RetryAfter(u16, u64),
    /// 429 or 503 with `Retry-After` as the HTTP-date this long after the
    /// answer (whole seconds, so up to a second less).
    RetryAt(u16, Duration),
    /// 302 to this location.
    Redirect(String),
    /// Holds the request this long, then answers 200.
    Hang(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    received: Vec<Received>,
}

/// A receiver on `127.0.0.1:<port>`; scripted replies are used in order,
/// then 200.
pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    pub async fn start(replies: Vec<Reply>) -> Self {
        let script = Arc::new(Mutex::new(Script {
            replies: replies.into(),
            received: Vec::new(),
        }));
        let shared = web::Data::new(Arc::clone(&script));
        let server = HttpServer::new(move || App::new().app_data(shared.clone()).default_service(web::to(answer)))
            .workers(2)
            .disable_signals()
            .shutdown_timeout(1)
            .bind("127.0.0.1:0")
            .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            script,
            handle,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// Replies to use next (before falling back to 200).
    pub fn script(&self, replies: Vec<Reply>) {
        self.script.lock().unwrap().replies.extend(replies);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn answer(request: HttpRequest, body: web::Bytes, script: web::Data<Arc<Mutex<Script>>>) -> HttpResponse {
    let reply = {
        let mut script = script.lock().unwrap();
        script.received.push(Received {
            path: request.path().to_owned(),
            headers: request
                .headers()
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_str().unwrap_or_default().to_owned()))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        script.replies.pop_front()
    };
    match reply {
        None | Some(Reply::Status(200)) => HttpResponse::Ok().body("ok"),
        Some(Reply::Status(status)) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body("scripted")
        }
        Some(Reply::RetryAfter(status, seconds)) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .insert_header(("Retry-After", seconds.to_string()))
                .finish()
        }
        Some(Reply::RetryAt(status, after)) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .insert_header(("Retry-After", httpdate::fmt_http_date(SystemTime::now() + after)))
                .finish()
        }
        Some(Reply::Redirect(location)) => HttpResponse::Found().insert_header(("Location", location)).finish(),
        Some(Reply::Hang(duration)) => {
            tokio::time::sleep(duration).await;
            HttpResponse::Ok().body("late")
        }
    }
}

/// Verifies a received webhook with the official `standardwebhooks` Python
/// package (an independent implementation), which `make test` installs.
pub fn verify_with_reference(secret: &str, received: &Received) -> Result<(), String> {
    let python = std::env::var("TRONPAY_PYTHON").unwrap_or_else(|_| "python3".into());
    let headers = serde_json::json!({
        "webhook-id": received.header("webhook-id"),
        "webhook-timestamp": received.header("webhook-timestamp"),
        "webhook-signature": received.header("webhook-signature"),
    });
    let script = "import json, sys\n\
        from standardwebhooks.webhooks import Webhook\n\
        secret, headers, body = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]\n\
        Webhook(secret).verify(body, headers)\n\
        print('verified')\n";
    let output = std::process::Command::new(&python)
        .args(["-c", script, secret, &headers.to_string(), &received.body])
        .output()
        .map_err(|error| format!("cannot run {python}: {error} (make test installs the referee)"))?;
    if output.status.success() && String::from_utf8_lossy(&output.stdout).contains("verified") {
        Ok(())
    } else {
        Err(format!(
            "standardwebhooks rejected it (is the package installed? make test installs it): {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
