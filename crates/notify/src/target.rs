//! The targets' clients and one send each: a webhook POST (signed), an SQS SendMessage,
//! an SNS Publish. Clients are built on first use from the server's settings (queues and
//! topics with the server's credentials, its assumed role included) and kept while used:
//! [`Clients::forget_idle`] drops those idle for [`IDLE`], so an idle server keeps no
//! client. One HTTP connection pool serves every webhook.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use outpost_config::{Server, Target, TargetKind};

use crate::sign::{EVENT_ID_HEADER, SIGNATURE_HEADER, signature};

/// A client unused this long is dropped.
pub const IDLE: Duration = Duration::from_secs(600);

/// How long one send may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Built clients by (server, target name), with when each was last used.
type Built = HashMap<(String, String), (Arc<Client>, Instant)>;

type Http = HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One target, ready to send.
pub(crate) enum Client {
    /// POST to `url`, signed with `secret`.
    Webhook {
        /// Parsed once.
        url: hyper::Uri,
        /// The HMAC key (never logged).
        secret: Vec<u8>,
    },
    /// SendMessage to `queue_url`.
    Sqs {
        /// With the server's credentials.
        client: aws_sdk_sqs::Client,
        /// The queue.
        queue_url: String,
    },
    /// Publish to `topic_arn`.
    Sns {
        /// With the server's credentials.
        client: aws_sdk_sns::Client,
        /// The topic.
        topic_arn: String,
    },
}

/// The clients in use, by server and target name.
pub(crate) struct Clients {
    /// The webhooks' HTTP client (`None` when the host's TLS roots cannot be loaded:
    /// every webhook send then says so).
    http: Result<Http, String>,
    /// Built clients and when each was last used.
    built: tokio::sync::Mutex<Built>,
}

impl Clients {
    pub(crate) fn new() -> Clients {
        let http = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map(|b| {
                let connector = b.https_or_http().enable_http1().build();
                HttpClient::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(4)
                    .build(connector)
            })
            .map_err(|e| format!("cannot load the host's TLS root certificates: {e}"));
        Clients {
            http,
            built: tokio::sync::Mutex::default(),
        }
    }

    /// Drops every client (the configuration changed).
    pub(crate) async fn clear(&self) {
        self.built.lock().await.clear();
    }

    /// Drops the clients idle for [`IDLE`].
    pub(crate) async fn forget_idle(&self, now: Instant) {
        self.built
            .lock()
            .await
            .retain(|_, (_, used)| now.duration_since(*used) < IDLE);
    }

    /// The client of `target` of `server`, built when needed (one build at a time).
    pub(crate) async fn get(
        &self,
        server: &Server,
        target: &Target,
    ) -> Result<Arc<Client>, String> {
        let k = (server.name.clone(), target.name.clone());
        let mut built = self.built.lock().await;
        if let Some((c, used)) = built.get_mut(&k) {
            *used = Instant::now();
            return Ok(c.clone());
        }
        let c = Arc::new(build(server, target).await?);
        built.insert(k, (c.clone(), Instant::now()));
        Ok(c)
    }

    /// Sends `body` (event `event_id`) through `client`.
    pub(crate) async fn send(
        &self,
        client: &Client,
        event_id: &str,
        body: &str,
    ) -> Result<(), String> {
        let sent = async {
            match client {
                Client::Webhook { url, secret } => {
                    let http = self.http.as_ref().map_err(Clone::clone)?;
                    post(http, url, secret, event_id, body).await
                }
                Client::Sqs { client, queue_url } => client
                    .send_message()
                    .queue_url(queue_url)
                    .message_body(body)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| outpost_uploader::UploadError::sdk("SendMessage", e).message),
                Client::Sns { client, topic_arn } => client
                    .publish()
                    .topic_arn(topic_arn)
                    .message(body)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| outpost_uploader::UploadError::sdk("Publish", e).message),
            }
        };
        tokio::time::timeout(SEND_TIMEOUT, sent)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {}s", SEND_TIMEOUT.as_secs())))
    }
}

/// One POST; any 2xx answer is success.
async fn post(
    http: &Http,
    url: &hyper::Uri,
    secret: &[u8],
    event_id: &str,
    body: &str,
) -> Result<(), String> {
    let req = hyper::Request::post(url.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("outpost/", env!("CARGO_PKG_VERSION")),
        )
        .header(SIGNATURE_HEADER, signature(secret, body.as_bytes()))
        .header(EVENT_ID_HEADER, event_id)
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let resp = http.request(req).await.map_err(|e| {
        // The error's sources say why (refused, TLS, DNS); never the URL's path.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        msg
    })?;
    let status = resp.status();
    // The status decides. A short answer is read to its end so the connection can be
    // used again; a long or slow one is dropped with its connection (never buffered).
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        http_body_util::Limited::new(resp.into_body(), 64 << 10).collect(),
    )
    .await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered HTTP {}", status.as_u16()))
    }
}

/// The client of `target`.
async fn build(server: &Server, target: &Target) -> Result<Client, String> {
    match &target.kind {
        TargetKind::Webhook { url, secret_file } => {
            let url: hyper::Uri = url
                .parse()
                .map_err(|e| format!("the webhook url cannot be read: {e}"))?;
            let secret = outpost_uploader::read_secret_file(secret_file, "secret_file")
                .map_err(|e| e.message)?;
            Ok(Client::Webhook {
                url,
                secret: secret.into_bytes(),
            })
        }
        TargetKind::Sqs {
            queue_url,
            region,
            endpoint,
        } => Ok(Client::Sqs {
            client: aws_sdk_sqs::Client::new(&identity(server, region, endpoint).await?),
            queue_url: queue_url.clone(),
        }),
        TargetKind::Sns {
            topic_arn,
            region,
            endpoint,
        } => Ok(Client::Sns {
            client: aws_sdk_sns::Client::new(&identity(server, region, endpoint).await?),
            topic_arn: topic_arn.clone(),
        }),
    }
}

/// The server's identity (its assumed role included) in a queue's or topic's
/// `region`, through `endpoint` when given.
async fn identity(
    server: &Server,
    region: &str,
    endpoint: &Option<String>,
) -> Result<outpost_uploader::SdkConfig, String> {
    outpost_uploader::server_sdk_config_at(server, region, endpoint.as_deref())
        .await
        .map_err(|e| e.message)
}
