//! Offloading one image to a remote server that speaks the Open Inference Protocol v2 (KServe,
//! Triton, or `triage serve`).
//!
//! [`RemoteClient`] sends either the compressed image (a BYTES tensor `[1]`) or the prepared
//! FP32 tensor `[1, 3, S, S]`, by default in the binary tensor data extension so that a
//! JPEG crosses the uplink as raw bytes rather than base64 (JSON is the fallback, for servers
//! without the extension). It uses only standard v2 fields. Every call carries a deadline:
//! each attempt's timeout is the time left, transient failures are retried with jittered
//! exponential backoff only while the deadline allows, and a [`CircuitBreaker`] stops
//! hammering a server that keeps failing. Replies are validated (model name, an FP32
//! `[1, 1000]` output, finite values) before anyone trusts them, and every failure is a typed
//! [`RemoteError`]. Each reply carries its [`RemoteTiming`] (bytes sent, wall time, server
//! compute time when the server reports it) for the network estimator.
//!
//! The HTTP client is `ureq` (blocking). The runtime executes one input at a time on the
//! device and must block for the answer anyway; a blocking client needs no async runtime in
//! the application (an embedded app should not have to host tokio to offload an image), keeps
//! per-attempt timeouts simple (one global timeout per exchange), and is small. Concurrency,
//! where wanted, is a thread per in-flight request: the client is `Send + Sync` and pools
//! connections across threads.

mod breaker;
mod error;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use error::{Phase, RemoteError};

use std::io::ErrorKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use triage_zoo::{Logits, PreparedInput, NUM_CLASSES};

use crate::v2::{self, InferRequest, InferResponse, RequestInput, RequestOutput, TensorData};

/// Reply parameter in which `triage serve` reports its compute time per request (not part of
/// the protocol; other servers simply do not send it).
pub const SERVER_COMPUTE_MS: &str = "triage_compute_ms";
/// Reply parameter in which `triage serve` reports the time a request waited for a worker.
pub const SERVER_QUEUE_MS: &str = "triage_queue_ms";

/// How a [`RemoteClient`] talks to its server.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// Name of the model's input tensor (both for images and for prepared tensors).
    pub input_name: String,
    /// Name of the output holding the 1000 ImageNet logits.
    pub output_name: String,
    /// Send tensor data in the binary extension (`false`: plain JSON, BYTES as base64).
    pub binary_input: bool,
    /// Ask for the logits in the binary extension (`false`: JSON numbers).
    pub binary_output: bool,
    /// Retries after the first attempt, for transient failures, within the deadline.
    pub max_retries: u32,
    /// Backoff before the first retry; doubled each retry up to `backoff_max`, jittered.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Upper bound on connection setup, within the deadline.
    pub connect_timeout: Duration,
    /// Replies larger than this are refused (a logits reply is ~12 kB of JSON).
    pub max_reply_bytes: u64,
    pub breaker: BreakerConfig,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            input_name: "input".into(),
            output_name: "logits".into(),
            binary_input: true,
            binary_output: false,
            max_retries: 2,
            backoff_initial: Duration::from_millis(25),
            backoff_max: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(2),
            max_reply_bytes: 4 << 20,
            breaker: BreakerConfig::default(),
        }
    }
}

/// What to send: the encoded image or the variant's prepared input.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// A JPEG/PNG/WebP file's bytes; the server decodes and preprocesses.
    Image(&'a [u8]),
    /// The prepared `[1, 3, S, S]` input.
    Tensor(&'a PreparedInput),
}

/// Measurements of one remote call, for the network estimator and for profiles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteTiming {
    /// Request body bytes of the successful attempt.
    pub upload_bytes: u64,
    /// Reply body bytes of the successful attempt.
    pub download_bytes: u64,
    /// Wall time of the successful attempt: from sending the request to the last reply byte.
    pub wall: Duration,
    /// Wall time of the whole call including failed attempts and backoff.
    pub total: Duration,
    /// Attempts made (1 when the first succeeded).
    pub attempts: u32,
    /// Compute time the server reported for the successful attempt, if it did.
    pub server_compute: Option<Duration>,
    /// Time the request waited for a worker on the server, if reported.
    pub server_queue: Option<Duration>,
}

/// A validated remote answer.
#[derive(Debug, Clone)]
pub struct RemoteReply {
    pub logits: Logits,
    pub model_version: Option<String>,
    pub timing: RemoteTiming,
}

/// Client for one v2 server; see the module documentation.
pub struct RemoteClient {
    base: String,
    agent: ureq::Agent,
    config: RemoteConfig,
    breaker: Mutex<CircuitBreaker>,
    rng: AtomicU64,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteClient")
            .field("base", &self.base)
            .field("breaker", &self.breaker_state())
            .finish()
    }
}

/// One encoded request.
struct Encoded {
    body: Vec<u8>,
    header_len: Option<usize>,
}

impl RemoteClient {
    /// A client for the server at `base_url` (`http://host:port`, optionally with a path
    /// prefix). Nothing is sent until the first call.
    pub fn new(base_url: &str, config: RemoteConfig) -> Result<Self, RemoteError> {
        let base = base_url.trim_end_matches('/').to_string();
        let invalid = |message: &str| RemoteError::InvalidUrl {
            url: base_url.to_string(),
            message: message.to_string(),
        };
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| invalid("must start with http:// or https://"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(invalid("has no host"));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_idle_connections_per_host(8)
            .user_agent(concat!("triage-runtime/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(std::process::id()) << 32);
        Ok(RemoteClient {
            base,
            agent,
            breaker: Mutex::new(CircuitBreaker::new(config.breaker)),
            config,
            rng: AtomicU64::new(seed | 1),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.lock_breaker().state(Instant::now())
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        // The breaker is plain data updated in single statements: a panic elsewhere while
        // holding the lock cannot leave it half-updated.
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Classifies one input on `model` remotely, finishing by `deadline` or failing.
    pub fn infer(
        &self,
        model: &str,
        payload: Payload<'_>,
        deadline: Instant,
    ) -> Result<RemoteReply, RemoteError> {
        let url = format!("{}/v2/models/{}/infer", self.base, encode_path(model));
        let encoded = self.encode(payload);
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let now = Instant::now();
            if now >= deadline {
                return Err(RemoteError::Timeout {
                    url,
                    budget: Duration::ZERO,
                });
            }
            let failures = {
                let mut b = self.lock_breaker();
                b.try_acquire(now)
                    .map_err(|retry_in| (b.consecutive_failures(), retry_in))
            };
            if let Err((failures, retry_in)) = failures {
                return Err(RemoteError::CircuitOpen { failures, retry_in });
            }
            let result = self.attempt(&url, model, &encoded, deadline);
            match result {
                Ok(mut reply) => {
                    self.lock_breaker().record_success();
                    reply.timing.attempts = attempt;
                    reply.timing.total = start.elapsed();
                    tracing::debug!(
                        model,
                        attempts = attempt,
                        upload_bytes = reply.timing.upload_bytes,
                        wall_ms = reply.timing.wall.as_secs_f64() * 1e3,
                        "remote inference"
                    );
                    return Ok(reply);
                }
                Err(e) => {
                    if e.counts_as_failure() {
                        self.lock_breaker().record_failure(Instant::now());
                    } else {
                        self.lock_breaker().record_success();
                    }
                    if !e.is_retryable() || attempt > self.config.max_retries {
                        tracing::debug!(model, attempts = attempt, error = %e, "remote inference failed");
                        return Err(e);
                    }
                    let wait = self
                        .backoff(attempt)
                        .max(e.retry_after().unwrap_or_default());
                    if Instant::now() + wait >= deadline {
                        tracing::debug!(model, error = %e, "no time left to retry");
                        return Err(e);
                    }
                    tracing::debug!(model, attempt, error = %e, wait_ms = wait.as_millis() as u64, "retrying");
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// Convenience for [`Payload::Image`].
    pub fn infer_image(
        &self,
        model: &str,
        image: &[u8],
        deadline: Instant,
    ) -> Result<RemoteReply, RemoteError> {
        self.infer(model, Payload::Image(image), deadline)
    }

    /// Convenience for [`Payload::Tensor`].
    pub fn infer_tensor(
        &self,
        model: &str,
        input: &PreparedInput,
        deadline: Instant,
    ) -> Result<RemoteReply, RemoteError> {
        self.infer(model, Payload::Tensor(input), deadline)
    }

    /// `GET /v2/health/ready` once (no retries, not gated by the breaker): `Ok` with the
    /// round-trip wall time when the server is ready. An RTT sample for the estimator.
    pub fn probe(&self, deadline: Instant) -> Result<Duration, RemoteError> {
        let url = format!("{}/v2/health/ready", self.base);
        self.get_ok(&url, deadline)
    }

    /// `GET /v2/models/{model}/ready`: `Ok(true)` when ready, `Ok(false)` on a 4xx.
    pub fn model_ready(&self, model: &str, deadline: Instant) -> Result<bool, RemoteError> {
        let url = format!("{}/v2/models/{}/ready", self.base, encode_path(model));
        match self.get_ok(&url, deadline) {
            Ok(_) => Ok(true),
            Err(RemoteError::Rejected { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn get_ok(&self, url: &str, deadline: Instant) -> Result<Duration, RemoteError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Err(RemoteError::Timeout {
                url: url.to_string(),
                budget,
            });
        }
        let start = Instant::now();
        let mut resp = self
            .agent
            .get(url)
            .config()
            .timeout_global(Some(budget))
            .timeout_connect(Some(budget.min(self.config.connect_timeout)))
            .build()
            .call()
            .map_err(|e| map_ureq(e, url, budget, Phase::Request))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.config.max_reply_bytes)
            .read_to_vec()
            .map_err(|e| map_ureq(e, url, budget, Phase::ReplyBody))?;
        let wall = start.elapsed();
        if status == 200 {
            Ok(wall)
        } else {
            Err(status_error(url, status, &body, retry_after))
        }
    }

    fn encode(&self, payload: Payload<'_>) -> Encoded {
        let name = self.config.input_name.clone();
        let binary = self.config.binary_input;
        let (input, blob) = match payload {
            Payload::Image(bytes) => {
                if binary {
                    let blob = v2::encode_bytes_elements(&[bytes]);
                    (
                        tensor(name, vec![1], "BYTES", None, Some(blob.len())),
                        Some(blob),
                    )
                } else {
                    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
                    let data = TensorData::Strings(vec![text]);
                    (tensor(name, vec![1], "BYTES", Some(data), None), None)
                }
            }
            Payload::Tensor(input) => {
                let s = i64::from(input.size());
                let shape = vec![1, 3, s, s];
                if binary {
                    let blob = v2::f32_to_le_bytes(input.as_slice());
                    (
                        tensor(name, shape, "FP32", None, Some(blob.len())),
                        Some(blob),
                    )
                } else {
                    let data = TensorData::F32(input.as_slice().to_vec());
                    (tensor(name, shape, "FP32", Some(data), None), None)
                }
            }
        };
        let mut out_params = serde_json::Map::new();
        if self.config.binary_output {
            out_params.insert(v2::BINARY_DATA.into(), serde_json::Value::Bool(true));
        }
        let request = InferRequest {
            id: None,
            parameters: None,
            inputs: vec![input],
            outputs: Some(vec![RequestOutput {
                name: self.config.output_name.clone(),
                parameters: (!out_params.is_empty()).then_some(out_params),
            }]),
        };
        // Serializing plain structs of strings, integers and finite-or-not floats into a
        // Vec cannot fail except for non-string map keys, which these types do not have.
        let json = serde_json::to_vec(&request).unwrap_or_default();
        match blob {
            Some(blob) => {
                let (body, header_len) = v2::encode_binary_body(&json, &[&blob]);
                Encoded {
                    body,
                    header_len: Some(header_len),
                }
            }
            None => Encoded {
                body: json,
                header_len: None,
            },
        }
    }

    fn attempt(
        &self,
        url: &str,
        model: &str,
        encoded: &Encoded,
        deadline: Instant,
    ) -> Result<RemoteReply, RemoteError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let start = Instant::now();
        let mut req = self
            .agent
            .post(url)
            .config()
            .timeout_global(Some(budget))
            .timeout_connect(Some(budget.min(self.config.connect_timeout)))
            .build();
        req = match encoded.header_len {
            Some(n) => req
                .header("Inference-Header-Content-Length", n.to_string())
                .content_type("application/octet-stream"),
            None => req.content_type("application/json"),
        };
        let mut resp = req
            .send(encoded.body.as_slice())
            .map_err(|e| map_ureq(e, url, budget, Phase::Request))?;
        let status = resp.status().as_u16();
        let retry = retry_after(resp.headers());
        let header_len = resp
            .headers()
            .get(v2::HEADER_CONTENT_LENGTH)
            .map(|v| v.to_str().unwrap_or("?").to_string());
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.config.max_reply_bytes)
            .read_to_vec()
            .map_err(|e| map_ureq(e, url, budget, Phase::ReplyBody))?;
        let wall = start.elapsed();
        if status != 200 {
            return Err(status_error(url, status, &body, retry));
        }
        let parsed = self.parse_reply(url, model, &body, header_len.as_deref())?;
        Ok(RemoteReply {
            logits: parsed.logits,
            model_version: parsed.model_version,
            timing: RemoteTiming {
                upload_bytes: encoded.body.len() as u64,
                download_bytes: body.len() as u64,
                wall,
                total: wall,
                attempts: 1,
                server_compute: parsed.compute,
                server_queue: parsed.queue,
            },
        })
    }

    fn parse_reply(
        &self,
        url: &str,
        model: &str,
        body: &[u8],
        header_len: Option<&str>,
    ) -> Result<Parsed, RemoteError> {
        let malformed = |message: String| RemoteError::MalformedReply {
            url: url.to_string(),
            message,
        };
        let (json, binary) = v2::split_body(body, header_len).map_err(malformed)?;
        let reply: InferResponse = serde_json::from_slice(json)
            .map_err(|e| malformed(format!("not a v2 inference reply: {e}")))?;
        if reply.model_name != model {
            return Err(RemoteError::WrongModel {
                url: url.to_string(),
                want: model.to_string(),
                got: reply.model_name,
            });
        }
        // Binary outputs are laid out in the order of `outputs`; find ours and its offset.
        let mut cursor = v2::BinaryCursor::new(binary);
        let mut found = None;
        for out in &reply.outputs {
            let size = v2::binary_data_size(out.parameters.as_ref()).map_err(&malformed)?;
            let bytes = match size {
                Some(n) => Some(cursor.take(n, &out.name).map_err(&malformed)?),
                None => None,
            };
            if out.name == self.config.output_name && found.is_none() {
                found = Some((out, bytes));
            }
        }
        cursor.finish().map_err(&malformed)?;
        let Some((out, bytes)) = found else {
            let names: Vec<&str> = reply.outputs.iter().map(|o| o.name.as_str()).collect();
            return Err(malformed(format!(
                "no output named '{}' (outputs: {names:?})",
                self.config.output_name
            )));
        };
        let wrong_shape = || RemoteError::WrongShape {
            url: url.to_string(),
            output: out.name.clone(),
            datatype: out.datatype.clone(),
            shape: out.shape.clone(),
        };
        if out.datatype != "FP32" || out.shape != [1, NUM_CLASSES as i64] {
            return Err(wrong_shape());
        }
        let values = match (bytes, &out.data) {
            (Some(b), _) => v2::f32_from_le_bytes(b).map_err(&malformed)?,
            (None, Some(data)) => data.to_f32().ok_or_else(|| {
                malformed(format!(
                    "output '{}' is FP32 but its data are {}",
                    out.name,
                    data.kind()
                ))
            })?,
            (None, None) => return Err(malformed(format!("output '{}' has no data", out.name))),
        };
        if values.len() != NUM_CLASSES {
            return Err(malformed(format!(
                "output '{}' says shape [1, {NUM_CLASSES}] but holds {} values",
                out.name,
                values.len()
            )));
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(RemoteError::NonFinite {
                url: url.to_string(),
                output: out.name.clone(),
                index,
                value,
            });
        }
        let ms = |key: &str| {
            reply
                .parameters
                .as_ref()
                .and_then(|p| p.get(key))
                .and_then(serde_json::Value::as_f64)
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| Duration::from_secs_f64(v / 1e3))
        };
        Ok(Parsed {
            logits: Logits(values),
            model_version: reply.model_version.clone(),
            compute: ms(SERVER_COMPUTE_MS),
            queue: ms(SERVER_QUEUE_MS),
        })
    }

    /// Jittered exponential backoff before retry number `attempt` (1-based): uniformly in
    /// `[b/2, b]` with `b = initial * 2^(attempt-1)` capped at `backoff_max`, so that clients
    /// failing together do not retry in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let b = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << exp)
            .min(self.config.backoff_max);
        let r = self.next_random();
        let frac = 0.5 + 0.5 * (r >> 11) as f64 / (1u64 << 53) as f64;
        b.mul_f64(frac)
    }

    /// splitmix64 step: good enough for jitter, lock-free across threads.
    fn next_random(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

struct Parsed {
    logits: Logits,
    model_version: Option<String>,
    compute: Option<Duration>,
    queue: Option<Duration>,
}

fn tensor(
    name: String,
    shape: Vec<i64>,
    datatype: &str,
    data: Option<TensorData>,
    binary_size: Option<usize>,
) -> RequestInput {
    let parameters = binary_size.map(|n| {
        let mut p = serde_json::Map::new();
        p.insert(
            v2::BINARY_DATA_SIZE.into(),
            serde_json::Value::from(n as u64),
        );
        p
    });
    RequestInput {
        name,
        shape,
        datatype: datatype.to_string(),
        parameters,
        data,
    }
}

/// Percent-encodes a model name for use as one path segment.
fn encode_path(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn retry_after(headers: &ureq::http::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// A non-200 reply as an error, with the server's `{"error": ...}` message when it sent one.
fn status_error(url: &str, status: u16, body: &[u8], retry_after: Option<Duration>) -> RemoteError {
    let message = serde_json::from_slice::<v2::ErrorBody>(body)
        .map(|e| e.error)
        .unwrap_or_else(|_| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "(empty body)".to_string()
            } else {
                text.chars().take(200).collect()
            }
        });
    let url = url.to_string();
    if status >= 500 {
        RemoteError::Server {
            url,
            status,
            message,
            retry_after,
        }
    } else {
        RemoteError::Rejected {
            url,
            status,
            message,
            retry_after,
        }
    }
}

fn map_ureq(e: ureq::Error, url: &str, budget: Duration, phase: Phase) -> RemoteError {
    let url_s = url.to_string();
    match e {
        ureq::Error::Timeout(_) => RemoteError::Timeout { url: url_s, budget },
        ureq::Error::Io(io) => match io.kind() {
            ErrorKind::ConnectionRefused => RemoteError::ConnectionRefused { url: url_s },
            ErrorKind::TimedOut | ErrorKind::WouldBlock => {
                RemoteError::Timeout { url: url_s, budget }
            }
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => RemoteError::ConnectionReset { url: url_s, phase },
            _ => RemoteError::Transport {
                url: url_s,
                message: format!("I/O error: {io}"),
            },
        },
        ureq::Error::Protocol(p) => RemoteError::MalformedReply {
            url: url_s,
            message: format!("not valid HTTP/1.1: {p}"),
        },
        ureq::Error::BodyExceedsLimit(n) => RemoteError::MalformedReply {
            url: url_s,
            message: format!("reply body larger than the {n}-byte limit"),
        },
        ureq::Error::BadUri(m) => RemoteError::InvalidUrl {
            url: url_s,
            message: m,
        },
        other => RemoteError::Transport {
            url: url_s,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(RemoteClient::new("localhost:8000", RemoteConfig::default()).is_err());
        assert!(RemoteClient::new("http://", RemoteConfig::default()).is_err());
        let c = RemoteClient::new("http://127.0.0.1:8000/", RemoteConfig::default()).unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8000");
    }

    #[test]
    fn model_names_are_path_encoded() {
        assert_eq!(encode_path("efficientnet_lite2"), "efficientnet_lite2");
        assert_eq!(encode_path("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let c = RemoteClient::new(
            "http://127.0.0.1:1",
            RemoteConfig {
                backoff_initial: Duration::from_millis(10),
                backoff_max: Duration::from_millis(35),
                ..RemoteConfig::default()
            },
        )
        .unwrap();
        for _ in 0..50 {
            let b1 = c.backoff(1);
            assert!(b1 >= Duration::from_millis(5) && b1 <= Duration::from_millis(10));
            let b2 = c.backoff(2);
            assert!(b2 >= Duration::from_millis(10) && b2 <= Duration::from_millis(20));
            let b9 = c.backoff(9);
            assert!(b9 >= Duration::from_micros(17_500) && b9 <= Duration::from_millis(35));
        }
    }

    #[test]
    fn binary_image_request_has_the_triton_layout() {
        let c = RemoteClient::new("http://127.0.0.1:1", RemoteConfig::default()).unwrap();
        let e = c.encode(Payload::Image(b"\xFF\xD8\xFFjpeg"));
        let n = e.header_len.unwrap();
        let header: serde_json::Value = serde_json::from_slice(&e.body[..n]).unwrap();
        assert_eq!(header["inputs"][0]["datatype"], "BYTES");
        assert_eq!(header["inputs"][0]["shape"], serde_json::json!([1]));
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 11);
        assert_eq!(&e.body[n..n + 4], &7u32.to_le_bytes());
        assert_eq!(&e.body[n + 4..], b"\xFF\xD8\xFFjpeg");
    }
}
