//! The Open Inference Protocol (KServe / Triton "v2") REST wire format, as far as Triage uses
//! it: inference requests and replies, model metadata, and the binary tensor data extension.
//!
//! Server and client share these types so that both speak exactly one format; the client
//! still relies only on standard fields, so it works against Triton or KServe as well.
//!
//! The binary extension: a body whose request carries the `Inference-Header-Content-Length:
//! N` header starts with an `N`-byte JSON header, followed by the raw bytes of every tensor
//! whose `parameters.binary_data_size` is set, in the order the tensors are listed. FP32 data
//! is little-endian; each BYTES element is a 4-byte little-endian length and then its bytes
//! (Triton's layout). Without the header the body is plain JSON, and BYTES elements are
//! base64 strings.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Header naming the length of the JSON part of a binary-extension body.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";
/// Tensor parameter giving the size of the tensor's data in the binary part.
pub const BINARY_DATA_SIZE: &str = "binary_data_size";
/// Requested-output parameter asking for the output in the binary part.
pub const BINARY_DATA: &str = "binary_data";
/// Request parameter asking for every output in the binary part.
pub const BINARY_DATA_OUTPUT: &str = "binary_data_output";

/// `POST /v2/models/{name}/infer` body (JSON part).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InferRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    pub inputs: Vec<RequestInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// One input tensor of a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<TensorData>,
}

/// One output a request asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

/// Reply to an inference request (JSON part).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferResponse {
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    pub outputs: Vec<ResponseOutput>,
}

/// One output tensor of a reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseOutput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<TensorData>,
}

/// `GET /v2/models/{name}` reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub name: String,
    #[serde(default)]
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// Name, datatype and shape of a model input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

/// `GET /v2` reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    pub extensions: Vec<String>,
}

/// Body of every error reply: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// The `data` of a tensor in JSON, flattened in row-major order (the protocol allows nested
/// arrays too; they are flattened on reading).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Numbers as written by this crate for FP32 tensors (shortest round-trip form).
    F32(Vec<f32>),
    /// Numbers as read from JSON.
    Numbers(Vec<f64>),
    /// Strings (BYTES tensors; base64 in Triage's convention).
    Strings(Vec<String>),
    Bools(Vec<bool>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::Numbers(v) => v.len(),
            TensorData::Strings(v) => v.len(),
            TensorData::Bools(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f32`, or `None` when they are not numbers.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match self {
            TensorData::F32(v) => Some(v.clone()),
            TensorData::Numbers(v) => Some(v.iter().map(|&x| x as f32).collect()),
            TensorData::Strings(_) | TensorData::Bools(_) => None,
        }
    }

    /// Short name of the element kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            TensorData::F32(_) | TensorData::Numbers(_) => "numbers",
            TensorData::Strings(_) => "strings",
            TensorData::Bools(_) => "booleans",
        }
    }
}

impl Serialize for TensorData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        match self {
            TensorData::F32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Numbers(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Strings(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Bools(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut acc = Flat::Empty;
        d.deserialize_any(FlattenSeed(&mut acc))?;
        Ok(match acc {
            Flat::Empty => TensorData::Numbers(Vec::new()),
            Flat::Numbers(v) => TensorData::Numbers(v),
            Flat::Strings(v) => TensorData::Strings(v),
            Flat::Bools(v) => TensorData::Bools(v),
        })
    }
}

/// Accumulator of a flattened (possibly nested) JSON array; all leaves must have one kind.
enum Flat {
    Empty,
    Numbers(Vec<f64>),
    Strings(Vec<String>),
    Bools(Vec<bool>),
}

struct FlattenSeed<'a>(&'a mut Flat);

impl<'de> DeserializeSeed<'de> for FlattenSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

const MIXED: &str = "tensor data mixes numbers, strings and booleans";

impl<'de> Visitor<'de> for FlattenSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a (possibly nested) array of numbers, strings or booleans")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(FlattenSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match self.0 {
            Flat::Empty => *self.0 = Flat::Numbers(vec![v]),
            Flat::Numbers(n) => n.push(v),
            _ => return Err(E::custom(MIXED)),
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.visit_f64(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        match self.0 {
            Flat::Empty => *self.0 = Flat::Strings(vec![v.to_string()]),
            Flat::Strings(s) => s.push(v.to_string()),
            _ => return Err(E::custom(MIXED)),
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.0 {
            Flat::Empty => *self.0 = Flat::Bools(vec![v]),
            Flat::Bools(b) => b.push(v),
            _ => return Err(E::custom(MIXED)),
        }
        Ok(())
    }
}

/// `parameters.binary_data_size` of a tensor: `Ok(None)` when absent, an error when it is
/// not a non-negative integer.
pub fn binary_data_size(parameters: Option<&Map<String, Value>>) -> Result<Option<usize>, String> {
    match parameters.and_then(|p| p.get(BINARY_DATA_SIZE)) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| {
                format!("parameters.{BINARY_DATA_SIZE} must be a non-negative integer, got {v}")
            }),
    }
}

/// A boolean parameter (`false` when absent or not a boolean).
pub fn bool_parameter(parameters: Option<&Map<String, Value>>, key: &str) -> bool {
    parameters
        .and_then(|p| p.get(key))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Splits a body into its JSON header and binary part given the value of the
/// `Inference-Header-Content-Length` header (`None`: all JSON).
pub fn split_body<'a>(
    body: &'a [u8],
    header_len: Option<&str>,
) -> Result<(&'a [u8], &'a [u8]), String> {
    let Some(text) = header_len else {
        return Ok((body, &[]));
    };
    let n: usize = text.trim().parse().map_err(|_| {
        format!("Inference-Header-Content-Length must be a byte count, got '{text}'")
    })?;
    if n > body.len() {
        return Err(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes",
            body.len()
        ));
    }
    Ok(body.split_at(n))
}

/// Hands out consecutive slices of a binary part, checking that the sizes add up.
pub struct BinaryCursor<'a> {
    rest: &'a [u8],
}

impl<'a> BinaryCursor<'a> {
    pub fn new(binary: &'a [u8]) -> Self {
        BinaryCursor { rest: binary }
    }

    /// The next `n` bytes, for the tensor called `name`.
    pub fn take(&mut self, n: usize, name: &str) -> Result<&'a [u8], String> {
        if n > self.rest.len() {
            return Err(format!(
                "tensor '{name}' declares {BINARY_DATA_SIZE} = {n} but only {} binary bytes remain",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Fails when bytes are left over (the declared sizes do not cover the binary part).
    pub fn finish(self) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes after the last binary tensor (sizes in {BINARY_DATA_SIZE} do not add up)",
                self.rest.len()
            ))
        }
    }
}

/// Assembles a binary-extension body; returns it with the JSON header's length.
pub fn encode_binary_body(header_json: &[u8], blobs: &[&[u8]]) -> (Vec<u8>, usize) {
    let total = header_json.len() + blobs.iter().map(|b| b.len()).sum::<usize>();
    let mut body = Vec::with_capacity(total);
    body.extend_from_slice(header_json);
    for b in blobs {
        body.extend_from_slice(b);
    }
    (body, header_json.len())
}

/// Serializes BYTES elements in Triton's binary layout (4-byte LE length, then the bytes).
pub fn encode_bytes_elements(elements: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(elements.iter().map(|e| e.len() + 4).sum());
    for e in elements {
        // BYTES elements over 4 GiB cannot be expressed in this layout; callers bound
        // request sizes far below that.
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// Parses BYTES elements in Triton's binary layout.
pub fn decode_bytes_elements(mut buf: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 4 {
            return Err(format!(
                "BYTES element truncated: {} bytes left, a 4-byte length prefix expected",
                buf.len()
            ));
        }
        let (len, rest) = buf.split_at(4);
        let n = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if n > rest.len() {
            return Err(format!(
                "BYTES element says {n} bytes but only {} remain",
                rest.len()
            ));
        }
        let (e, rest) = rest.split_at(n);
        out.push(e);
        buf = rest;
    }
    Ok(out)
}

/// FP32 values as little-endian bytes.
pub fn f32_to_le_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Little-endian bytes as FP32 values.
pub fn f32_from_le_bytes(bytes: &[u8]) -> Result<Vec<f32>, String> {
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "FP32 binary data has {} bytes, not a multiple of 4",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Number of elements of a shape, `None` for a negative dimension or an overflow.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nested_data_is_flattened() {
        let d: TensorData = serde_json::from_str("[[1, 2.5], [3, [4]]]").unwrap();
        assert_eq!(d, TensorData::Numbers(vec![1.0, 2.5, 3.0, 4.0]));
        let s: TensorData = serde_json::from_str(r#"["a", ["b"]]"#).unwrap();
        assert_eq!(s, TensorData::Strings(vec!["a".into(), "b".into()]));
        assert!(serde_json::from_str::<TensorData>(r#"[1, "a"]"#).is_err());
        assert!(serde_json::from_str::<TensorData>(r#"{"a": 1}"#).is_err());
    }

    #[test]
    fn f32_written_by_serde_reads_back_exactly() {
        let v = vec![0.1f32, -3.4028235e38, 1e-45, 123.456, 0.0];
        let text = serde_json::to_string(&TensorData::F32(v.clone())).unwrap();
        let back: TensorData = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_f32().unwrap(), v);
    }

    #[test]
    fn binary_body_splits_back() {
        let (body, n) = encode_binary_body(b"{\"a\":1}", &[b"xy", b"z"]);
        let (h, bin) = split_body(&body, Some(&n.to_string())).unwrap();
        assert_eq!(h, b"{\"a\":1}");
        let mut c = BinaryCursor::new(bin);
        assert_eq!(c.take(2, "t").unwrap(), b"xy");
        assert!(c.take(2, "u").is_err());
        assert_eq!(c.take(1, "u").unwrap(), b"z");
        c.finish().unwrap();
        assert!(split_body(&body, Some("100")).is_err());
        assert!(split_body(&body, Some("x")).is_err());
    }

    #[test]
    fn binary_data_size_is_validated() {
        let mut p = Map::new();
        assert_eq!(binary_data_size(Some(&p)).unwrap(), None);
        p.insert(BINARY_DATA_SIZE.into(), Value::from(12));
        assert_eq!(binary_data_size(Some(&p)).unwrap(), Some(12));
        p.insert(BINARY_DATA_SIZE.into(), Value::from(-1));
        assert!(binary_data_size(Some(&p)).is_err());
    }

    proptest! {
        #[test]
        fn bytes_elements_round_trip(elems in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5)) {
            let refs: Vec<&[u8]> = elems.iter().map(|e| e.as_slice()).collect();
            let enc = encode_bytes_elements(&refs);
            let dec = decode_bytes_elements(&enc).unwrap();
            prop_assert_eq!(dec, refs);
        }

        #[test]
        fn bytes_elements_never_panic_on_garbage(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_bytes_elements(&buf);
        }

        #[test]
        fn f32_bytes_round_trip(v in proptest::collection::vec(any::<f32>(), 0..64)) {
            let back = f32_from_le_bytes(&f32_to_le_bytes(&v)).unwrap();
            prop_assert_eq!(back.len(), v.len());
            for (a, b) in back.iter().zip(&v) {
                prop_assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }
}
