//! Calling a webhook: one CloudEvents 1.0 request in HTTP binary mode (the attributes in
//! `ce-*` headers, the event's data as the JSON body), signed, sent only to allowed addresses,
//! never following redirects, with a deadline for the whole exchange.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use signalbox_core::{AppId, clock};

use super::signing;
use super::targets::{self, GuardedResolver, TargetPolicy};

/// The most of an answer's body read: more is an error.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
const USER_AGENT: &str = concat!("signalbox/", env!("CARGO_PKG_VERSION"));

/// One webhook request to make.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    pub(crate) url: &'a str,
    /// Every live secret (two during a rotation).
    pub(crate) secrets: &'a [Vec<u8>],
    pub(crate) app: &'a AppId,
    /// The CloudEvents `type`.
    pub(crate) kind: &'a str,
    /// The CloudEvents `id`: unique per event, the same on every retry.
    pub(crate) id: &'a str,
    /// When the event happened, in Unix milliseconds.
    pub(crate) time_millis: i64,
    /// The connection the event is about, if any (`ce-subject`).
    pub(crate) subject: Option<&'a str>,
    pub(crate) user: Option<&'a str>,
    pub(crate) body: &'a [u8],
    pub(crate) timeout: Duration,
    /// Headers of another protocol spoken on top (the SignalR upstream's `X-ASRS-*`).
    pub(crate) extra_headers: &'a [(&'static str, String)],
}

/// The webhook's answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
    pub(crate) latency: Duration,
}

impl Answer {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("refused target: {0}")]
    Target(#[from] targets::TargetError),
    /// The policy refuses every address of the target. Said the same way whatever listens (or
    /// does not) there, and before any connection is tried, so a test call probes nothing.
    #[error(
        "refused target: its address is not allowed (loopback, private, link-local and metadata addresses are refused unless the operator allows them)"
    )]
    Refused,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    #[error("the answer is larger than {MAX_ANSWER_BYTES} bytes")]
    AnswerTooLarge,
}

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

/// The one HTTP client of the api's webhook calls.
#[derive(Debug, Clone)]
pub(crate) struct WebhookClient {
    client: Client<Connector, Full<Bytes>>,
    policy: TargetPolicy,
}

impl WebhookClient {
    pub(crate) fn new(policy: TargetPolicy) -> Self {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver(policy));
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https);
        Self { client, policy }
    }

    pub(crate) fn policy(&self) -> TargetPolicy {
        self.policy
    }

    /// Makes the call.
    pub(crate) async fn call(&self, call: &Call<'_>) -> Result<Answer, CallError> {
        let url = url::Url::parse(call.url).map_err(|_| targets::TargetError::Malformed)?;
        targets::check_literal_host(&url, self.policy).map_err(|_| CallError::Refused)?;
        let mut request = Request::post(url.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .header("ce-specversion", "1.0")
            .header("ce-id", call.id)
            .header("ce-source", format!("/apps/{}", call.app))
            .header("ce-type", call.kind)
            .header("ce-time", clock::rfc3339(call.time_millis))
            .header(signing::HEADER, signing::signature(call.secrets, clock::unix_seconds(), call.body));
        for (name, value) in call.extra_headers {
            // A value a header cannot carry (a user id with control characters) is left out.
            if let Ok(value) = HeaderValue::from_str(value) {
                request = request.header(*name, value);
            }
        }
        if let Some(subject) = call.subject {
            request = request.header("ce-subject", subject);
        }
        // A user id may hold characters a header cannot: then it is only in the body.
        if let Some(user) = call.user.and_then(|u| HeaderValue::from_str(u).ok()) {
            request = request.header("ce-userid", user);
        }
        let request = request
            .body(Full::new(Bytes::copy_from_slice(call.body)))
            .map_err(|e| CallError::Request(e.to_string()))?;
        let started = Instant::now();
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if refused_by_policy(&e) { CallError::Refused } else { CallError::Request(describe(&e)) }
            })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        CallError::AnswerTooLarge
                    } else {
                        CallError::Request(e.to_string())
                    }
                })?
                .to_bytes();
            Ok::<_, CallError>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(call.timeout, exchange).await.map_err(|_| CallError::Timeout(call.timeout))??;
        Ok(Answer { status, body, latency: started.elapsed() })
    }
}

/// Whether a connection failed because [`GuardedResolver`] refused every address.
fn refused_by_policy(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        // An io::Error's `source` skips the error it wraps: look inside it.
        let inner = err.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        if err.is::<targets::TargetError>() || inner.is_some_and(|e| e.is::<targets::TargetError>()) {
            return true;
        }
        cause = err.source();
    }
    false
}

/// An error with its causes, which is where the useful part of a connection error is.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
