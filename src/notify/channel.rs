//! Delivery channels. A deployment sends notifications through its e-mail / SMS
//! gateway with [`Webhook`] (an HTTPS POST signed with HMAC-SHA256); [`LogChannel`]
//! and [`FileChannel`] are for development and tests.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde_json::Value;

use crate::config::{Config, NotificationChannelSetting};

/// Sends one notification; `Err` is retried later.
pub trait Channel: Send + Sync {
    /// `payload` is the outbox's JSON: `notification`, `patient`, `kind`, `text`,
    /// `sent`.
    fn deliver(&self, payload: &str) -> Result<(), String>;
}

/// Builds the configured channel.
pub fn from_config(config: &Config) -> Result<Arc<dyn Channel>, String> {
    Ok(match &config.notification_channel {
        NotificationChannelSetting::Log => Arc::new(LogChannel),
        NotificationChannelSetting::File(path) => Arc::new(FileChannel::new(path.clone())),
        NotificationChannelSetting::Webhook(url) => {
            let path = config
                .notification_webhook_secret_file
                .as_ref()
                .ok_or("the webhook channel needs --notification-webhook-secret-file")?;
            let secret = std::fs::read(path).map_err(|error| {
                format!("cannot read the webhook secret {}: {error}", path.display())
            })?;
            let secret = secret.trim_ascii().to_vec();
            if secret.len() < 16 {
                return Err(format!(
                    "the webhook secret in {} is shorter than 16 bytes",
                    path.display()
                ));
            }
            Arc::new(Webhook::new(url.clone(), secret))
        }
    })
}

/// A log record per notification (kind and patient, not the text).
pub struct LogChannel;

impl Channel for LogChannel {
    fn deliver(&self, payload: &str) -> Result<(), String> {
        let value: Value = serde_json::from_str(payload).map_err(|error| error.to_string())?;
        tracing::info!(
            target: "notification",
            kind = value["kind"].as_str().unwrap_or(""),
            patient = value["patient"].as_str().unwrap_or(""),
            notification = value["notification"].as_str().unwrap_or(""),
            "notification delivered to the log"
        );
        Ok(())
    }
}

/// One JSON line per notification, appended to a file.
pub struct FileChannel {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileChannel {
    pub fn new(path: PathBuf) -> FileChannel {
        FileChannel {
            path,
            lock: Mutex::new(()),
        }
    }
}

impl Channel for FileChannel {
    fn deliver(&self, payload: &str) -> Result<(), String> {
        let _turn = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The codes of accounts go through it too: its owner's only.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|error| format!("cannot open {}: {error}", self.path.display()))?;
        writeln!(file, "{payload}")
            .and_then(|()| file.sync_data())
            .map_err(|error| format!("cannot write {}: {error}", self.path.display()))
    }
}

/// The signature header: `sha256=` and the hex HMAC-SHA256 of `timestamp.body`.
pub const SIGNATURE_HEADER: &str = "X-Notification-Signature";
/// Seconds since the epoch when the request was signed (replay window for the
/// receiver).
pub const TIMESTAMP_HEADER: &str = "X-Notification-Timestamp";

/// POSTs each notification as JSON to a gateway, signed so the gateway can tell it
/// comes from this server. Any 2xx answer is a delivery.
pub struct Webhook {
    url: String,
    secret: Vec<u8>,
    agent: ureq::Agent,
}

/// The HMAC-SHA256 of `timestamp.body` under `secret`, in hex.
pub fn signature(secret: &[u8], timestamp: &str, body: &str) -> Result<String, String> {
    let key = PKey::hmac(secret).map_err(|error| error.to_string())?;
    let mut signer =
        Signer::new(MessageDigest::sha256(), &key).map_err(|error| error.to_string())?;
    signer
        .update(timestamp.as_bytes())
        .and_then(|()| signer.update(b"."))
        .and_then(|()| signer.update(body.as_bytes()))
        .map_err(|error| error.to_string())?;
    let mac = signer.sign_to_vec().map_err(|error| error.to_string())?;
    Ok(mac.iter().map(|byte| format!("{byte:02x}")).collect())
}

impl Webhook {
    pub fn new(url: String, secret: Vec<u8>) -> Webhook {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::NativeTls)
                    .build(),
            )
            .build()
            .new_agent();
        Webhook { url, secret, agent }
    }
}

impl Channel for Webhook {
    fn deliver(&self, payload: &str) -> Result<(), String> {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = signature(&self.secret, &timestamp, payload)?;
        let response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, &format!("sha256={signature}"))
            .send(payload)
            .map_err(|error| format!("webhook {}: {error}", self.url))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("webhook {} answered {status}", self.url))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value a receiver computes with any HMAC library (here Python's `hmac`).
    #[test]
    fn the_signature_is_the_hmac_sha256_of_timestamp_dot_body() {
        assert_eq!(
            signature(b"secret-key-0123456789", "1700000000", r#"{"a":1}"#).unwrap(),
            "95a94f8e9919abdf552708a6c1d5604116ad2a78af755c3113cf47afa01d92f2"
        );
    }
}
