//! What every tronpay binary does at start: read `.env`, layer its
//! configuration (defaults, optional file, environment), set up logging, and
//! wait for SIGINT/SIGTERM.

#[cfg(feature = "http")]
pub mod health;

use std::io::IsTerminal;
use std::path::Path;

use serde::de::DeserializeOwned;
use tracing_subscriber::EnvFilter;

/// A setting that is missing, malformed or out of range.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

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
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            builder = builder.add_source(config::File::from(file.as_path()).format(config::FileFormat::Toml));
        }
        let config = builder
            .add_source(config::Environment::default())
            .build()
            .map_err(|error| ConfigError(error.to_string()))?;
        Ok(Self { config })
    }

    /// Deserializes one component's settings (a struct whose fields are the
    /// lowercase setting names, with `#[serde(default)]`).
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.config
            .clone()
            .try_deserialize()
            .map_err(|error| ConfigError(describe(&error)))
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
