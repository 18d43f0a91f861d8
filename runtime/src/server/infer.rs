//! Turning one v2 inference request into logits: parsing (JSON or the binary extension),
//! validating the input against the variant, decoding images, running the network and
//! writing the reply. Runs on the blocking workers, never on the async threads: everything
//! here is CPU work (a 260x260 FP32 tensor in JSON is 2-3 MB of text to parse).

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use triage_zoo::{DecodeOptions, Logits, PreparedInput, Variant, Zoo, NUM_CLASSES};

use super::metrics::Metrics;
use super::ApiError;
use crate::remote::{SERVER_COMPUTE_MS, SERVER_QUEUE_MS};
use crate::v2::{self, InferRequest, InferResponse, ResponseOutput, TensorData};

/// Output names a variant offers.
pub(crate) const LOGITS: &str = "logits";
pub(crate) const PROBABILITIES: &str = "probabilities";

/// A successful reply, ready to send.
pub(crate) struct InferReply {
    pub body: Vec<u8>,
    /// Length of the JSON part when the reply uses the binary extension.
    pub header_len: Option<usize>,
}

/// One admitted request.
pub(crate) struct Job {
    pub model: String,
    pub body: axum::body::Bytes,
    pub header_len: Option<String>,
    pub admitted: Instant,
    pub reply: oneshot::Sender<Result<InferReply, ApiError>>,
}

/// Why a job was not admitted.
pub(crate) enum Refused {
    Full,
    Closed,
}

/// A fixed set of inference threads fed by a bounded queue. tract runs one inference on one
/// thread, so `workers` threads keep that many cores busy; the queue bounds how much work
/// waits, and a full queue is refused at once (back-pressure) rather than growing latency.
pub(crate) struct Pool {
    tx: Mutex<Option<SyncSender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    metrics: Metrics,
}

impl Pool {
    pub fn start(
        zoo: Arc<Zoo>,
        decode: DecodeOptions,
        workers: usize,
        queue: usize,
        metrics: Metrics,
    ) -> std::io::Result<Pool> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = Vec::new();
        for i in 0..workers.max(1) {
            let ctx = Worker {
                zoo: zoo.clone(),
                decode,
                metrics: metrics.clone(),
                rx: rx.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("infer-{i}"))
                    .spawn(move || ctx.run())?,
            );
        }
        Ok(Pool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            metrics,
        })
    }

    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        let guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(Refused::Closed);
        };
        // Count before sending so a fast worker never decrements below zero.
        self.metrics.queue_depth.inc();
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics.queue_depth.dec();
                Err(match e {
                    TrySendError::Full(_) => Refused::Full,
                    TrySendError::Disconnected(_) => Refused::Closed,
                })
            }
        }
    }

    /// Stops accepting work, lets the workers finish what was admitted, and joins them.
    pub fn close_and_join(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

struct Worker {
    zoo: Arc<Zoo>,
    decode: DecodeOptions,
    metrics: Metrics,
    rx: Arc<Mutex<Receiver<Job>>>,
}

impl Worker {
    fn run(self) {
        loop {
            let job = {
                let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
                rx.recv()
            };
            let Ok(job) = job else {
                return;
            };
            self.metrics.queue_depth.dec();
            let started = Instant::now();
            let waited = started - job.admitted;
            self.metrics.queue_wait.observe(waited.as_secs_f64());
            if job.reply.is_closed() {
                tracing::debug!(model = %job.model, "client gone before its turn: skipped");
                continue;
            }
            self.metrics.busy_workers.inc();
            // A panic inside a decoder or the engine must cost one request, not a worker.
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                process(&self.zoo, &self.decode, &job, waited)
            }))
            .unwrap_or_else(|_| {
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "inference panicked; see the server log",
                ))
            });
            let elapsed = started.elapsed();
            self.metrics.busy_workers.dec();
            self.metrics
                .inference
                .with_label_values(&[job.model.as_str()])
                .observe(elapsed.as_secs_f64());
            let _ = job.reply.send(result);
        }
    }
}

/// The input of one request, validated for the variant.
enum ModelInput {
    Tensor(PreparedInput),
    Image(Vec<u8>),
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn process(
    zoo: &Zoo,
    decode: &DecodeOptions,
    job: &Job,
    waited: Duration,
) -> Result<InferReply, ApiError> {
    let start = Instant::now();
    let variant = zoo
        .variant(&job.model)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    let (json, binary) = v2::split_body(&job.body, job.header_len.as_deref()).map_err(bad)?;
    let request: InferRequest = serde_json::from_slice(json)
        .map_err(|e| bad(format!("malformed inference request: {e}")))?;
    let input = parse_input(variant, &request, binary)?;
    let outputs = requested_outputs(&request)?;
    let prepared = match input {
        ModelInput::Tensor(t) => t,
        ModelInput::Image(bytes) => {
            let opts = Zoo::decode_options_for([variant], *decode);
            let img = triage_zoo::decode_bytes(&bytes, Path::new("request image"), &opts)
                .map_err(|e| bad(format!("undecodable image: {e}")))?;
            variant.prepare(&img).map_err(|e| bad(e.to_string()))?
        }
    };
    let logits = variant.run(&prepared).map_err(|e| {
        tracing::error!(model = %job.model, error = %e, "inference failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })?;
    let compute = start.elapsed();
    Ok(reply(
        &job.model, &request, &outputs, &logits, compute, waited,
    ))
}

/// The single input of a request as the variant's tensor or an encoded image.
fn parse_input(
    variant: &Variant,
    request: &InferRequest,
    binary: &[u8],
) -> Result<ModelInput, ApiError> {
    let [input] = request.inputs.as_slice() else {
        return Err(bad(format!(
            "model '{}' takes exactly one input, the request has {}",
            variant.name(),
            request.inputs.len()
        )));
    };
    let mut cursor = v2::BinaryCursor::new(binary);
    let raw = match v2::binary_data_size(input.parameters.as_ref()).map_err(bad)? {
        Some(n) => {
            if input.data.is_some() {
                return Err(bad(format!(
                    "input '{}' has both JSON data and binary_data_size",
                    input.name
                )));
            }
            Some(cursor.take(n, &input.name).map_err(bad)?)
        }
        None => None,
    };
    cursor.finish().map_err(bad)?;
    let no_data = || bad(format!("input '{}' has no data", input.name));
    match input.datatype.as_str() {
        "FP32" => {
            let s = i64::from(variant.input_size());
            let want = [1, 3, s, s];
            if input.shape != want {
                return Err(bad(format!(
                    "model '{}' takes FP32 {want:?} (NCHW, preprocessed), got shape {:?}",
                    variant.name(),
                    input.shape
                )));
            }
            let values = match (raw, &input.data) {
                (Some(bytes), _) => v2::f32_from_le_bytes(bytes).map_err(bad)?,
                (None, Some(data)) => data.to_f32().ok_or_else(|| {
                    bad(format!(
                        "input '{}' is FP32 but its data are {}",
                        input.name,
                        data.kind()
                    ))
                })?,
                (None, None) => return Err(no_data()),
            };
            let n = v2::element_count(&want).unwrap_or(0);
            if values.len() != n {
                return Err(bad(format!(
                    "input '{}' has shape {want:?} ({n} values) but {} values of data",
                    input.name,
                    values.len()
                )));
            }
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "input '{}' has a non-finite value at index {i}",
                    input.name
                )));
            }
            PreparedInput::from_nchw(variant.input_size(), values)
                .map(ModelInput::Tensor)
                .map_err(|e| bad(e.to_string()))
        }
        "BYTES" => {
            if v2::element_count(&input.shape) != Some(1) {
                return Err(bad(format!(
                    "a BYTES input holds one encoded image: shape [1] expected, got {:?}",
                    input.shape
                )));
            }
            let bytes = match (raw, &input.data) {
                (Some(b), _) => binary_image(b).map_err(bad)?,
                (None, Some(TensorData::Strings(s))) => {
                    let [one] = s.as_slice() else {
                        return Err(bad(format!(
                            "input '{}' has shape [1] but {} strings",
                            input.name,
                            s.len()
                        )));
                    };
                    base64::engine::general_purpose::STANDARD
                        .decode(one.trim())
                        .map_err(|e| {
                            bad(format!(
                                "input '{}': BYTES data in JSON must be base64: {e}",
                                input.name
                            ))
                        })?
                }
                (None, Some(other)) => {
                    return Err(bad(format!(
                        "input '{}' is BYTES but its data are {}",
                        input.name,
                        other.kind()
                    )))
                }
                (None, None) => return Err(no_data()),
            };
            Ok(ModelInput::Image(bytes))
        }
        other => Err(bad(format!(
            "unsupported datatype '{other}' for input '{}': send FP32 [1, 3, S, S] or one BYTES image",
            input.name
        ))),
    }
}

/// The image of a binary BYTES tensor: Triton's layout (a 4-byte length prefix) or, as some
/// clients send it, the bare file.
fn binary_image(raw: &[u8]) -> Result<Vec<u8>, String> {
    if raw.len() >= 4 {
        let n = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        if n == raw.len() - 4 {
            return Ok(raw[4..].to_vec());
        }
    }
    if image_signature(raw) {
        return Ok(raw.to_vec());
    }
    let elements = v2::decode_bytes_elements(raw)?;
    match elements.as_slice() {
        [one] => Ok(one.to_vec()),
        more => Err(format!(
            "BYTES input has shape [1] but {} elements",
            more.len()
        )),
    }
}

fn image_signature(b: &[u8]) -> bool {
    b.starts_with(&[0xFF, 0xD8, 0xFF])
        || b.starts_with(b"\x89PNG")
        || (b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP")
}

/// Requested outputs: `(name, binary)`; by default the logits alone, in JSON unless the
/// request parameter `binary_data_output` says otherwise.
fn requested_outputs(request: &InferRequest) -> Result<Vec<(String, bool)>, ApiError> {
    let all_binary = v2::bool_parameter(request.parameters.as_ref(), v2::BINARY_DATA_OUTPUT);
    let Some(outs) = &request.outputs else {
        return Ok(vec![(LOGITS.to_string(), all_binary)]);
    };
    if outs.is_empty() {
        return Ok(vec![(LOGITS.to_string(), all_binary)]);
    }
    outs.iter()
        .map(|o| {
            if o.name != LOGITS && o.name != PROBABILITIES {
                return Err(bad(format!(
                    "unknown output '{}' (outputs: {LOGITS}, {PROBABILITIES})",
                    o.name
                )));
            }
            let binary = all_binary || v2::bool_parameter(o.parameters.as_ref(), v2::BINARY_DATA);
            Ok((o.name.clone(), binary))
        })
        .collect()
}

fn reply(
    model: &str,
    request: &InferRequest,
    outputs: &[(String, bool)],
    logits: &Logits,
    compute: Duration,
    waited: Duration,
) -> InferReply {
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    let tensors = outputs
        .iter()
        .map(|(name, binary)| {
            let values = if name == PROBABILITIES {
                logits.softmax(1.0)
            } else {
                logits.as_slice().to_vec()
            };
            let (data, parameters) = if *binary {
                let bytes = v2::f32_to_le_bytes(&values);
                let mut p = Map::new();
                p.insert(v2::BINARY_DATA_SIZE.into(), Value::from(bytes.len() as u64));
                blobs.push(bytes);
                (None, Some(p))
            } else {
                (Some(TensorData::F32(values)), None)
            };
            ResponseOutput {
                name: name.clone(),
                shape: vec![1, NUM_CLASSES as i64],
                datatype: "FP32".into(),
                parameters,
                data,
            }
        })
        .collect();
    let mut parameters = Map::new();
    parameters.insert(
        SERVER_COMPUTE_MS.into(),
        Value::from(compute.as_secs_f64() * 1e3),
    );
    parameters.insert(
        SERVER_QUEUE_MS.into(),
        Value::from(waited.as_secs_f64() * 1e3),
    );
    let response = InferResponse {
        model_name: model.to_string(),
        model_version: Some("1".into()),
        id: request.id.clone(),
        parameters: Some(parameters),
        outputs: tensors,
    };
    // Structs of strings, integers and floats always serialize; logits of a finite input
    // may still be NaN from a broken model, which serde_json writes as null (the client
    // rejects it).
    let json = serde_json::to_vec(&response).unwrap_or_default();
    if blobs.is_empty() {
        InferReply {
            body: json,
            header_len: None,
        }
    } else {
        let refs: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
        let (body, n) = v2::encode_binary_body(&json, &refs);
        InferReply {
            body,
            header_len: Some(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_images_with_or_without_prefix() {
        let jpeg = b"\xFF\xD8\xFF\xE0rest".to_vec();
        let prefixed = v2::encode_bytes_elements(&[&jpeg]);
        assert_eq!(binary_image(&prefixed).unwrap(), jpeg);
        assert_eq!(binary_image(&jpeg).unwrap(), jpeg);
        let two = v2::encode_bytes_elements(&[b"ab", b"cd"]);
        assert!(binary_image(&two).is_err());
        assert!(binary_image(b"xy").is_err());
    }

    #[test]
    fn outputs_default_to_logits() {
        let mut r = InferRequest::default();
        assert_eq!(requested_outputs(&r).unwrap(), vec![(LOGITS.into(), false)]);
        r.outputs = Some(vec![crate::v2::RequestOutput {
            name: "scores".into(),
            parameters: None,
        }]);
        assert_eq!(
            requested_outputs(&r).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
