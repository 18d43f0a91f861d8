//! Everything that can go wrong talking to a remote v2 server, one variant per thing a
//! caller would handle differently (retry, open the breaker, fall back, report a bug).

use std::time::Duration;

/// Where in an exchange a connection broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// While sending the request or waiting for the reply's status line and headers.
    Request,
    /// While reading the reply body, after the headers had arrived.
    ReplyBody,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Request => "before the reply",
            Phase::ReplyBody => "in the middle of the reply body",
        })
    }
}

/// A failed remote inference or probe.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("invalid server URL '{url}': {message}")]
    InvalidUrl { url: String, message: String },

    #[error("{url}: connection refused (is the server running?)")]
    ConnectionRefused { url: String },

    #[error("{url}: no complete reply within the deadline ({budget:?} were left)")]
    Timeout { url: String, budget: Duration },

    #[error("{url}: connection reset {phase}")]
    ConnectionReset { url: String, phase: Phase },

    #[error("{url}: server error HTTP {status}: {message}")]
    Server {
        url: String,
        status: u16,
        message: String,
        /// `Retry-After` of the reply, when it had one.
        retry_after: Option<Duration>,
    },

    #[error("{url}: request rejected with HTTP {status}: {message}")]
    Rejected {
        url: String,
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },

    #[error("{url}: malformed reply: {message}")]
    MalformedReply { url: String, message: String },

    #[error("{url}: output '{output}' is {datatype} {shape:?}, expected FP32 [1, 1000]")]
    WrongShape {
        url: String,
        output: String,
        datatype: String,
        shape: Vec<i64>,
    },

    #[error("{url}: reply is for model '{got}', the request was for '{want}'")]
    WrongModel {
        url: String,
        want: String,
        got: String,
    },

    #[error("{url}: output '{output}' has a non-finite value ({value}) at index {index}")]
    NonFinite {
        url: String,
        output: String,
        index: usize,
        value: f32,
    },

    #[error(
        "remote server skipped: circuit open after {failures} consecutive failures \
         (next probe in {retry_in:?})"
    )]
    CircuitOpen { failures: u32, retry_in: Duration },

    #[error("{url}: {message}")]
    Transport { url: String, message: String },
}

impl RemoteError {
    /// Worth trying again within the same deadline: the failure is likely transient and the
    /// request is idempotent.
    pub fn is_retryable(&self) -> bool {
        match self {
            RemoteError::ConnectionRefused { .. } | RemoteError::ConnectionReset { .. } => true,
            RemoteError::Server { status, .. } => matches!(status, 502..=504),
            RemoteError::Rejected { status, .. } => *status == 429,
            _ => false,
        }
    }

    /// Says the server or the path to it is unhealthy (counts towards opening the breaker).
    /// A 4xx reply does not: the server is alive and answered.
    pub fn counts_as_failure(&self) -> bool {
        !matches!(
            self,
            RemoteError::Rejected { .. }
                | RemoteError::InvalidUrl { .. }
                | RemoteError::CircuitOpen { .. }
        )
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RemoteError::Server { retry_after, .. } | RemoteError::Rejected { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}
