//! What every tronpay binary shares: read `.env`, layer its configuration
//! (defaults, optional file, environment) and check it once ([`Validate`]),
//! set up logging, wait for SIGINT/SIGTERM, supervise its long-running tasks
//! ([`supervise`]), and keep passwords out of what it prints
//! ([`redact_url`]). With the `http` feature, the services' common skeleton:
//! `main`, start and stop (`service`), and the health endpoint (`health`).

#[cfg(feature = "http")]
pub mod health;
#[cfg(feature = "http")]
pub mod metrics;
#[cfg(feature = "http")]
pub mod service;
pub mod supervise;

use std::io::IsTerminal;
use std::path::Path;

use serde::de::DeserializeOwned;
use tracing_subscriber::EnvFilter;

/// A setting that is missing, malformed or out of range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration could not be read or a value has the wrong type:
    /// "DB_POOL_SIZE is invalid: invalid digit found in string".
    #[error("configuration error: {0}")]
    Load(String),
    /// A value was read but [`Validate`] refused it: "invalid setting:
    /// DB_POOL_SIZE must be between 2 and 1000".
    #[error("invalid setting: {0}")]
    Invalid(String),
}

/// Settings that check their own values once, at start.
///
/// Each component's settings struct implements it; services load them with
/// [`Settings::validated`], so a bad value stops the process before anything
/// starts, with one line naming the setting.
pub trait Validate {
    /// `Ok` when every value is usable; otherwise the message names the
    /// environment variable and what is wrong with it, e.g.
    /// `"DB_POOL_SIZE must be between 2 and 1000"`.
    fn validate(&self) -> Result<(), String>;
}

/// The layered configuration every component reads its settings from.
///
/// Layers, lowest first: each settings struct's defaults, the TOML file
/// (`--config` or `TRONPAY_CONFIG`, keys in lowercase: `database_url = …`),
/// then environment variables (`DATABASE_URL`, `DB_POOL_SIZE`, …). A `.env`
/// file in the working directory is read into the environment first, without
/// overriding variables already set.
pub struct Settings {
    config: config::Config,
}

impl Settings {
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is worth a warning.
        if let Err(error) = dotenvy::dotenv()
            && !error.not_found()
        {
            eprintln!("warning: .env was not read: {error}");
        }
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("TRONPAY_CONFIG").map(Into::into));
        let mut builder = config::Config::builder();
        if let Some(file) = &file {
            if !file.exists() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            builder = builder.add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml));
        }
        let config = builder
            .add_source(config::Environment::default())
            .build()
            .map_err(|error| ConfigError::Load(error.to_string()))?;
        Ok(Self { config })
    }

    /// The same configuration with `key` (a lowercase setting name such as
    /// `bind`) set to `value` above every layer — a command-line flag that
    /// overrides its variable. `None` changes nothing.
    pub fn with_override(self, key: &str, value: Option<String>) -> Result<Self, ConfigError> {
        let Some(value) = value else { return Ok(self) };
        let config = config::Config::builder()
            .add_source(self.config)
            .set_override(key, value)
            .and_then(|builder| builder.build())
            .map_err(|error| ConfigError::Load(error.to_string()))?;
        Ok(Self { config })
    }

    /// Deserializes one component's settings (a struct whose fields are the
    /// lowercase setting names, with `#[serde(default)]`), unchecked; see
    /// [`Self::validated`].
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.config
            .clone()
            .try_deserialize()
            .map_err(|error| ConfigError::Load(describe(&error)))
    }

    /// Deserializes one component's settings and checks them: a value of the
    /// wrong type is [`ConfigError::Load`], one its [`Validate`] refuses is
    /// [`ConfigError::Invalid`] ("invalid setting: …").
    pub fn validated<T: DeserializeOwned + Validate>(&self) -> Result<T, ConfigError> {
        let settings: T = self.get()?;
        settings.validate().map_err(ConfigError::Invalid)?;
        Ok(settings)
    }
}

/// What a service reads at start, each part checked: its own settings
/// (`S`), the database's (`D`) and the broker's (`B`) — the last two the same
/// for every service. Each service names its own (`tronpay_api::Config`).
#[derive(Debug, Clone)]
pub struct ServiceConfig<S, D, B> {
    pub service: S,
    pub db: D,
    pub bus: B,
}

impl<S, D, B> ServiceConfig<S, D, B>
where
    S: DeserializeOwned + Validate,
    D: DeserializeOwned + Validate,
    B: DeserializeOwned + Validate,
{
    /// Reads the three from the layered configuration; an error names the
    /// bad setting.
    pub fn load(settings: &Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            service: settings.validated()?,
            db: settings.validated()?,
            bus: settings.validated()?,
        })
    }
}

/// Turns the `config` crate's message into one naming the variable.
fn describe(error: &config::ConfigError) -> String {
    let text = error.to_string();
    // "invalid digit found in string for key `db_pool_size` in the environment"
    match text.split_once(" for key `") {
        Some((problem, rest)) => {
            let key = rest.split('`').next().unwrap_or_default();
            format!("{} is invalid: {problem}", key.to_ascii_uppercase())
        }
        None => text,
    }
}

/// Log output format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logging settings: `LOG_FORMAT` (text or json) and `RUST_LOG` (filter,
/// default `info`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct LogSettings {
    pub log_format: LogFormat,
    pub rust_log: Option<String>,
}

/// Installs the global tracing subscriber (once; later calls do nothing).
pub fn init_logging(settings: &LogSettings) {
    let filter = settings
        .rust_log
        .as_deref()
        .and_then(|filter| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone). Unlike
/// `wait_for`, it holds no borrow of the value afterwards, so it can sit in a
/// `select!` beside code that reads the receiver.
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// The connection string with any password replaced by `***`, for logs and
/// messages: the URL's `user:password@` (PostgreSQL, AMQP, HTTP), a
/// `password=` query parameter, or a `password=` item of a `key=value`
/// (libpq) connection string. Anything else is returned unchanged, as
/// written. URLs are taken apart as text, not parsed, so libpq's host lists
/// (`postgres://u:p@db1:5432,db2:5432/x?target_session_attrs=read-write`),
/// which URL parsers refuse, are redacted as well.
pub fn redact_url(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text
            .split_whitespace()
            .map(|item| match item.split_once('=') {
                Some((key, _)) if key.trim() == "password" => format!("{key}=***"),
                _ => item.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    // The user information ends at the last `@` before the query (a
    // password may hold an unencoded `/`, never an unencoded `@`).
    let authority = match before_query.rfind('@') {
        Some(at) => {
            let (userinfo, hosts) = before_query.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***{hosts}"),
                None => before_query.to_owned(),
            }
        }
        None => before_query.to_owned(),
    };
    let query = query.map(|query| {
        query
            .split('&')
            .map(|piece| match piece.split_once('=') {
                Some(("password", _)) => "password=***".to_owned(),
                _ => piece.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(query) => format!("{scheme}://{authority}?{query}"),
        None => format!("{scheme}://{authority}"),
    }
}

/// Serializes a connection string as [`redact_url`] shows it: for
/// `#[serde(serialize_with = "…")]` on URL settings, so settings serialized
/// for display (the dashboard's settings page) carry no password.
pub fn serialize_redacted_url<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&redact_url(url))
}

/// The exit code for what a service's `run` returned; a failure is printed
/// as one line on stderr, `<name>: <the error and its causes>`.
pub fn exit_code<E: std::fmt::Display>(name: &str, outcome: Result<(), E>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Example {
        #[allow(dead_code)]
        db_pool_size: usize,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Bounded {
        db_pool_size: usize,
    }

    impl Validate for Bounded {
        fn validate(&self) -> Result<(), String> {
            if self.db_pool_size < 2 {
                return Err("DB_POOL_SIZE must be at least 2".into());
            }
            Ok(())
        }
    }

    fn with(key: &str, value: &str) -> Settings {
        let config = config::Config::builder()
            .set_override(key, value)
            .unwrap()
            .build()
            .unwrap();
        Settings { config }
    }

    #[test]
    fn validated_settings_say_which_one_is_invalid() {
        let error = with("db_pool_size", "1").validated::<Bounded>().unwrap_err();
        assert_eq!(error.to_string(), "invalid setting: DB_POOL_SIZE must be at least 2");
        let error = with("db_pool_size", "ten").validated::<Bounded>().unwrap_err();
        assert!(matches!(error, ConfigError::Load(_)), "{error}");
        assert_eq!(
            with("db_pool_size", "4").validated::<Bounded>().unwrap().db_pool_size,
            4
        );
    }

    #[test]
    fn an_override_beats_every_layer() {
        let settings = with("db_pool_size", "1")
            .with_override("db_pool_size", Some("8".into()))
            .unwrap();
        assert_eq!(settings.validated::<Bounded>().unwrap().db_pool_size, 8);
        let unchanged = with("db_pool_size", "3").with_override("db_pool_size", None).unwrap();
        assert_eq!(unchanged.get::<Bounded>().unwrap().db_pool_size, 3);
    }

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=secret"),
            "postgres://h/db?user=u&password=***"
        );
        assert_eq!(
            redact_url("host=h user=u password=secret"),
            "host=h user=u password=***"
        );
        // libpq's host lists, which URL parsers refuse.
        assert_eq!(
            redact_url(
                "postgres://tronpay:s3cr%40t@db1:5432,db2:5433/tronpay?target_session_attrs=read-write&sslmode=verify-full"
            ),
            "postgres://tronpay:***@db1:5432,db2:5433/tronpay?target_session_attrs=read-write&sslmode=verify-full"
        );
        assert_eq!(redact_url("postgres://u:p/ss@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://db1,db2/x"), "postgres://db1,db2/x");
    }

    #[tokio::test]
    async fn stopped_resolves_when_the_flag_turns_true() {
        let (stop, mut shutdown) = tokio::sync::watch::channel(false);
        let waiting = tokio::spawn(async move { stopped(&mut shutdown).await });
        stop.send(true).unwrap();
        waiting.await.unwrap();
        // A dropped sender counts as stopped.
        let (stop, mut shutdown) = tokio::sync::watch::channel(false);
        drop(stop);
        stopped(&mut shutdown).await;
    }

    #[test]
    fn errors_name_the_variable() {
        let config = config::Config::builder()
            .set_override("db_pool_size", "ten")
            .unwrap()
            .build()
            .unwrap();
        let error = Settings { config }.get::<Example>().unwrap_err().to_string();
        assert!(error.contains("DB_POOL_SIZE"), "{error}");
    }
}
