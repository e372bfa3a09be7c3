//! One S3 client per distinct identity and connection settings (servers that agree share
//! it), built once: region, endpoint, path style, credentials,
//! finite timeouts, the SDK's own retries off (ours is the only retry policy), and
//! checksums only where we send them ourselves.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials as StaticCredentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation,
};
use outpost_config::{Credentials, Server};

use crate::{ErrorClass, Integrity, UploadError};

/// A server's destination: its settings and its client.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The merged settings of the server.
    pub server: Arc<Server>,
    /// The S3 client, shared with every server of the same identity and connection
    /// settings ([`ClientKey`]).
    pub client: Arc<aws_sdk_s3::Client>,
    /// Set once the destination refused multipart while accepting a single PUT: files
    /// up to 5 GiB then go as one streamed PutObject.
    pub multipart_refused: Arc<std::sync::atomic::AtomicBool>,
    /// What makes the store verify every byte: the checksum header, the signed payload
    /// hash, or both ([`Integrity::of`]).
    pub integrity: Integrity,
    /// What the static secret file held when the client was built.
    secret: Option<SecretStamp>,
}

/// A fingerprint of a static secret (never the secret; `Debug` shows nothing of it):
/// SIGHUP compares it with what the secret file holds now.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SecretStamp(u64);

impl std::fmt::Debug for SecretStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretStamp(..)")
    }
}

impl SecretStamp {
    fn of(secret: &str) -> SecretStamp {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        secret.hash(&mut h);
        SecretStamp(h.finish())
    }
}

impl Destination {
    /// Builds the client of `server`. Reading the static secret happens here: a secret
    /// file readable by group or others is refused.
    pub async fn new(server: Arc<Server>) -> Result<Destination, UploadError> {
        let (client, secret) = shared_client(&server).await?;
        Ok(Destination {
            integrity: Integrity::of(&server),
            server,
            client,
            multipart_refused: Arc::default(),
            secret,
        })
    }

    /// Whether the static secret file now holds another secret than the one this
    /// client signs with (or cannot be read any more). Always false for the other
    /// credential modes.
    pub fn secret_changed(&self) -> bool {
        match &self.server.credentials {
            Credentials::Static {
                secret_access_key_file,
                ..
            } => !read_secret(secret_access_key_file)
                .is_ok_and(|s| Some(SecretStamp::of(&s)) == self.secret),
            _ => false,
        }
    }
}

/// The one HTTPS client of the process (the SDK's default stack: hyper, rustls with
/// aws-lc, the host's roots): every server's SDK client uses it, so 10,000 servers hold
/// one connection pool (keyed by host; idle connections close after a while) and the
/// host's root certificates are parsed once, not once per server (a changed
/// `SSL_CERT_FILE` bundle needs a restart). Connectors are kept per distinct pair of
/// connect and read timeouts. The proxy comes from the environment, as with the SDK's
/// default client.
fn shared_http_client() -> aws_sdk_s3::config::SharedHttpClient {
    static HTTP: std::sync::OnceLock<aws_sdk_s3::config::SharedHttpClient> =
        std::sync::OnceLock::new();
    HTTP.get_or_init(|| {
        use aws_smithy_http_client::proxy::ProxyConfig;
        use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
        // As the SDK builds its default client (aws-smithy-runtime's
        // `default_https_client`): the proxy from HTTPS_PROXY / HTTP_PROXY / NO_PROXY.
        Builder::new().build_with_connector_fn(|settings, components| {
            let mut b = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ));
            b.set_connector_settings(settings.cloned());
            if let Some(c) = components {
                b.set_sleep_impl(c.sleep_impl());
            }
            b.set_proxy_config(Some(ProxyConfig::from_env()));
            b.build()
        })
    })
    .clone()
}

/// What every SDK configuration of a server starts from: its region, no SDK retries
/// (ours is the only retry policy), its connect and read timeouts, the shared client.
fn loader(server: &Server) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(shared_http_client())
        .region(Region::new(server.region.clone()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(server.timeouts.connect)
                .read_timeout(server.timeouts.read)
                .build(),
        )
}

/// The SDK configuration of a server's own identity (before any AssumeRole), and the
/// stamp of the static secret it read.
async fn base_config(
    server: &Server,
) -> Result<(aws_config::SdkConfig, Option<SecretStamp>), UploadError> {
    let mut stamp = None;
    let mut loader = loader(server);
    if let Credentials::Static {
        access_key_id,
        secret_access_key_file,
    } = &server.credentials
    {
        let secret = read_secret(secret_access_key_file)?;
        stamp = Some(SecretStamp::of(&secret));
        loader = loader.credentials_provider(StaticCredentials::new(
            access_key_id,
            secret,
            None,
            None,
            "outpost-static",
        ));
    }
    Ok((loader.load().await, stamp))
}

/// The SDK configuration uploads use: the base identity, or the assumed role; and the
/// stamp of the static secret.
async fn sdk_config(
    server: &Server,
) -> Result<(aws_config::SdkConfig, Option<SecretStamp>), UploadError> {
    let (base, stamp) = base_config(server).await?;
    if let Credentials::AssumeRole {
        role_arn,
        external_id,
    } = &server.credentials
    {
        let mut b = aws_config::sts::AssumeRoleProvider::builder(role_arn.clone())
            .session_name(session_name())
            .configure(&base);
        if let Some(id) = external_id {
            b = b.external_id(id.clone());
        }
        let provider = b.build().await;
        let with_role = loader(server).credentials_provider(provider).load().await;
        return Ok((with_role, stamp));
    }
    Ok((base, stamp))
}

/// `outpost-<host>`: names the publisher host in the customer's CloudTrail.
fn session_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "=,.@-".contains(*c))
        .take(55)
        .collect();
    format!("outpost-{host}")
}

fn read_secret(path: &std::path::Path) -> Result<String, UploadError> {
    read_secret_file(path, "secret_access_key_file")
}

/// Reads a secret from `path` (the key `what` names it in messages): refused when
/// readable by group or others, unreadable or empty; trimmed.
pub fn read_secret_file(path: &std::path::Path, what: &str) -> Result<String, UploadError> {
    let refuse = |m: String| UploadError::new(ErrorClass::Refused, "credentials", m);
    let md = std::fs::metadata(path)
        .map_err(|e| refuse(format!("cannot read {what} {}: {e}", path.display())))?;
    if md.permissions().mode() & 0o077 != 0 {
        return Err(refuse(format!(
            "{what} {} is readable by group or others (mode {:o}); refusing it: chmod 600",
            path.display(),
            md.permissions().mode() & 0o777
        )));
    }
    let s = std::fs::read_to_string(path)
        .map_err(|e| refuse(format!("cannot read {what} {}: {e}", path.display())))?;
    let s = s.trim().to_owned();
    if s.is_empty() {
        return Err(refuse(format!("{what} {} is empty", path.display())));
    }
    Ok(s)
}

/// Checks a static secret file without building a client (for `outpost check`).
pub fn check_secret_file(path: &std::path::Path) -> Result<(), UploadError> {
    read_secret(path).map(|_| ())
}

/// Everything an S3 client is made of. Servers that agree on all of it — the usual case:
/// one publisher identity writing to many customers' buckets in a few regions — share
/// one client: its SDK configuration, runtime plugins and identity cache cost about
/// 50 KB, which 10,000 servers would otherwise hold 10,000 times. A static secret's
/// stamp is part of it, so a changed secret gets a new client.
#[derive(PartialEq, Eq, Hash)]
struct ClientKey {
    region: String,
    endpoint: Option<String>,
    path_style: bool,
    credentials: Credentials,
    secret: Option<SecretStamp>,
    timeouts: (std::time::Duration, std::time::Duration),
}

impl ClientKey {
    fn of(s: &Server, secret: Option<SecretStamp>) -> ClientKey {
        ClientKey {
            region: s.region.clone(),
            endpoint: s.endpoint.clone(),
            path_style: s.path_style,
            credentials: s.credentials.clone(),
            secret,
            timeouts: (s.timeouts.connect, s.timeouts.read),
        }
    }
}

/// The clients in use, held weakly: a client lives as long as a destination holds it
/// (its servers removed or changed, it is freed with the last one); the table's dead
/// entries (a key and a pointer) go whenever it has doubled.
type SharedClients = std::collections::HashMap<ClientKey, std::sync::Weak<aws_sdk_s3::Client>>;

fn shared_clients() -> std::sync::MutexGuard<'static, SharedClients> {
    static CLIENTS: std::sync::OnceLock<std::sync::Mutex<SharedClients>> =
        std::sync::OnceLock::new();
    CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// `server`'s client: the one a server with the same [`ClientKey`] uses, else a new one.
async fn shared_client(
    server: &Server,
) -> Result<(Arc<aws_sdk_s3::Client>, Option<SecretStamp>), UploadError> {
    let stamp = match &server.credentials {
        Credentials::Static {
            secret_access_key_file,
            ..
        } => Some(SecretStamp::of(&read_secret(secret_access_key_file)?)),
        _ => None,
    };
    let key = ClientKey::of(server, stamp);
    if let Some(client) = shared_clients()
        .get(&key)
        .and_then(std::sync::Weak::upgrade)
    {
        return Ok((client, stamp));
    }
    // Keyed by the secret the client was built with (the file may change in between).
    let (client, stamp) = build_client(server).await?;
    let key = ClientKey::of(server, stamp);
    let mut clients = shared_clients();
    if let Some(client) = clients.get(&key).and_then(std::sync::Weak::upgrade) {
        return Ok((client, stamp));
    }
    // Amortized: 10,000 distinct identities at start-up are not 10,000 full passes.
    if clients.len().is_power_of_two() {
        clients.retain(|_, c| c.strong_count() > 0);
    }
    let client = Arc::new(client);
    clients.insert(key, Arc::downgrade(&client));
    Ok((client, stamp))
}

async fn build_client(
    server: &Server,
) -> Result<(aws_sdk_s3::Client, Option<SecretStamp>), UploadError> {
    let (base, stamp) = sdk_config(server).await?;
    let mut b = aws_sdk_s3::config::Builder::from(&base)
        .force_path_style(server.path_style)
        // We send our own checksum header on every PUT and part; the SDK's default
        // aws-chunked trailer framing is refused by some stores (radosgw over http).
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(ep) = &server.endpoint {
        b = b.endpoint_url(ep.clone());
    }
    Ok((aws_sdk_s3::Client::from_conf(b.build()), stamp))
}

/// The SDK configuration of `server`'s identity (its assumed role, if any) for another
/// AWS service acting for it in `region`, through `endpoint` when given (notification
/// queues and topics).
pub async fn server_sdk_config_at(
    server: &Server,
    region: &str,
    endpoint: Option<&str>,
) -> Result<aws_config::SdkConfig, UploadError> {
    let mut b = sdk_config(server)
        .await?
        .0
        .to_builder()
        .region(Region::new(region.to_owned()));
    if let Some(ep) = endpoint {
        b = b.endpoint_url(ep);
    }
    Ok(b.build())
}

/// A client for ad-hoc probes (same settings as uploads).
pub async fn probe_client(server: &Server) -> Result<aws_sdk_s3::Client, UploadError> {
    Ok(build_client(server).await?.0)
}

/// The AWS account of the publisher's own identity (STS GetCallerIdentity).
pub async fn caller_account(server: &Server) -> Result<String, UploadError> {
    let (base, _) = base_config(server).await?;
    let sts = aws_sdk_sts::Client::new(&base);
    let out = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| UploadError::sdk("GetCallerIdentity", e))?;
    out.account().map(str::to_owned).ok_or_else(|| {
        UploadError::new(
            ErrorClass::Transient,
            "GetCallerIdentity",
            "no account in the answer",
        )
    })
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
