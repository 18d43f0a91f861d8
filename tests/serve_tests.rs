//! `triage serve` in process on 127.0.0.1:0 with the real zoo and real images: answers equal
//! local execution, the v2 endpoints and errors, back-pressure, metrics, graceful shutdown.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use triage_runtime::remote::{RemoteClient, RemoteConfig, RemoteError};
use triage_runtime::server::{ServeConfig, ServerHandle};
use triage_zoo::{DecodeOptions, Logits, Zoo};

const SMALL: &str = "mobilenet_v1_025_128";
const BIG: &str = "efficientnet_lite2";

fn image(name: &str) -> Vec<u8> {
    std::fs::read(
        common::shared()
            .join("datasets/imagenet-sample/images")
            .join(name),
    )
    .unwrap()
}

/// One zoo for the tests of this file, so that each model is loaded once.
fn zoo() -> Arc<Zoo> {
    static ZOO: OnceLock<Arc<Zoo>> = OnceLock::new();
    ZOO.get_or_init(|| Arc::new(Zoo::open(common::shared().join("zoo")).unwrap()))
        .clone()
}

fn start(zoo: Arc<Zoo>, models: &[&str], edit: impl FnOnce(&mut ServeConfig)) -> ServerHandle {
    let mut config = ServeConfig::new(models.iter().map(|m| m.to_string()).collect());
    config.workers = 2;
    config.io_threads = 1;
    edit(&mut config);
    ServerHandle::start("127.0.0.1:0".parse().unwrap(), zoo, config).unwrap()
}

/// A reply read by a minimal HTTP/1.1 client, independent of the crate's own client.
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_string()
    }
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        let mut out = Vec::new();
        let mut rest = body.as_slice();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 4 + n..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn post_json(addr: SocketAddr, model: &str, request: &serde_json::Value) -> Reply {
    http(
        addr,
        "POST",
        &format!("/v2/models/{model}/infer"),
        &[("content-type", "application/json".into())],
        &serde_json::to_vec(request).unwrap(),
    )
}

/// A binary-extension request: JSON header, then `blob`.
fn post_binary(addr: SocketAddr, model: &str, header: &serde_json::Value, blob: &[u8]) -> Reply {
    let json = serde_json::to_vec(header).unwrap();
    http(
        addr,
        "POST",
        &format!("/v2/models/{model}/infer"),
        &[("inference-header-content-length", json.len().to_string())],
        &[json.as_slice(), blob].concat(),
    )
}

/// Standard base64 with padding (the v2 convention for BYTES in JSON).
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[test]
fn answers_equal_local_execution_for_jpeg_bytes_and_the_prepared_tensor() {
    let zoo = zoo();
    let server = start(zoo.clone(), &[SMALL], |_| {});
    server.wait_ready(Duration::from_secs(30)).unwrap();
    let v = zoo.variant(SMALL).unwrap();
    for name in ["n01440764_tench.JPEG", "n01494475_hammerhead.JPEG"] {
        let jpeg = image(name);
        // Decoded as a device running only this variant would: what the server does.
        let opts = Zoo::decode_options_for([v], DecodeOptions::default());
        let img = triage_zoo::decode_bytes(&jpeg, Path::new(name), &opts).unwrap();
        let local: Logits = v.classify(&img).unwrap();
        let prepared = v.prepare(&img).unwrap();
        assert_eq!(v.run(&prepared).unwrap(), local);

        for binary in [true, false] {
            let client = RemoteClient::new(
                &server.url(),
                RemoteConfig {
                    binary_input: binary,
                    binary_output: binary,
                    ..RemoteConfig::default()
                },
            )
            .unwrap();
            let by_image = client.infer_image(SMALL, &jpeg, deadline()).unwrap();
            let d = max_abs_diff(by_image.logits.as_slice(), local.as_slice());
            assert!(d <= 1e-5, "{name} image, binary={binary}: max diff {d}");
            let by_tensor = client.infer_tensor(SMALL, &prepared, deadline()).unwrap();
            let d = max_abs_diff(by_tensor.logits.as_slice(), local.as_slice());
            assert!(d <= 1e-5, "{name} tensor, binary={binary}: max diff {d}");
            assert_eq!(by_image.logits.argmax(), local.argmax());
            assert!(by_tensor.timing.server_compute.is_some());
            let upload = by_image.timing.upload_bytes as usize;
            if binary {
                // Raw JPEG bytes plus a small JSON header, no base64 inflation.
                assert!(upload > jpeg.len() && upload < jpeg.len() + 400, "{upload}");
            } else {
                assert!(upload > jpeg.len() * 4 / 3, "{upload}");
            }
        }
    }
}

#[test]
fn probabilities_are_the_softmax_of_the_logits() {
    let zoo = zoo();
    let server = start(zoo.clone(), &[SMALL], |_| {});
    server.wait_ready(Duration::from_secs(30)).unwrap();
    let png = {
        // A PNG made from a real photo, sent as base64 in plain JSON.
        let jpeg = image("n01498041_stingray.JPEG");
        let img = image::load_from_memory(&jpeg).unwrap();
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let encoded = b64(&png);
    let reply = post_json(
        server.addr(),
        SMALL,
        &serde_json::json!({
            "id": "req-7",
            "inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": [encoded]}],
            "outputs": [{"name": "probabilities"}, {"name": "logits"}],
        }),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let v = reply.json();
    assert_eq!(v["id"], "req-7");
    assert_eq!(v["model_name"], SMALL);
    let get = |i: usize| -> Vec<f32> {
        assert_eq!(v["outputs"][i]["shape"], serde_json::json!([1, 1000]));
        assert_eq!(v["outputs"][i]["datatype"], "FP32");
        v["outputs"][i]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    assert_eq!(v["outputs"][0]["name"], "probabilities");
    let (probs, logits) = (get(0), get(1));
    let expected = Logits(logits).softmax(1.0);
    assert!(max_abs_diff(&probs, &expected) <= 1e-7);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    // And it equals local execution on the decoded PNG.
    let zv = zoo.variant(SMALL).unwrap();
    let img =
        triage_zoo::decode_bytes(&png, Path::new("x.png"), &DecodeOptions::default()).unwrap();
    let local = zv.classify(&img).unwrap().softmax(1.0);
    assert!(max_abs_diff(&probs, &local) <= 1e-5);
}

#[test]
fn health_metadata_and_readiness_follow_the_protocol() {
    // A fresh zoo: the big model is not loaded yet when the server starts.
    let fresh = Arc::new(Zoo::open(common::shared().join("zoo")).unwrap());
    let server = start(fresh, &[BIG, SMALL], |_| {});
    let addr = server.addr();
    assert_eq!(http(addr, "GET", "/v2/health/live", &[], b"").status, 200);
    let not_ready = http(addr, "GET", "/v2/health/ready", &[], b"");
    assert_eq!(not_ready.status, 400, "ready before the models loaded");
    assert_eq!(not_ready.json()["ready"], false);
    let early = post_json(addr, BIG, &serde_json::json!({"inputs": []}));
    assert_eq!(early.status, 503);
    assert!(early.headers.contains_key("retry-after"));

    server.wait_ready(Duration::from_secs(60)).unwrap();
    let ready = http(addr, "GET", "/v2/health/ready", &[], b"");
    assert_eq!(
        (ready.status, ready.json()["ready"].clone()),
        (200, true.into())
    );
    let r = http(addr, "GET", &format!("/v2/models/{BIG}/ready"), &[], b"");
    assert_eq!(r.status, 200);
    let client = RemoteClient::new(&server.url(), RemoteConfig::default()).unwrap();
    assert!(client.model_ready(BIG, deadline()).unwrap());
    assert!(!client.model_ready("resnet50", deadline()).unwrap());
    assert!(client.probe(deadline()).unwrap() < Duration::from_secs(1));

    let meta = http(addr, "GET", &format!("/v2/models/{BIG}"), &[], b"").json();
    assert_eq!(meta["name"], BIG);
    assert_eq!(meta["platform"], "tract_onnx");
    assert_eq!(meta["inputs"][0]["datatype"], "FP32");
    assert_eq!(
        meta["inputs"][0]["shape"],
        serde_json::json!([1, 3, 260, 260])
    );
    assert_eq!(meta["outputs"][0]["name"], "logits");
    assert_eq!(meta["outputs"][0]["shape"], serde_json::json!([1, 1000]));
    let small = http(addr, "GET", &format!("/v2/models/{SMALL}"), &[], b"").json();
    assert_eq!(
        small["inputs"][0]["shape"],
        serde_json::json!([1, 3, 128, 128])
    );
    let server_meta = http(addr, "GET", "/v2", &[], b"").json();
    assert!(server_meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&"binary_tensor_data".into()));

    for path in [
        "/v2/models/resnet50".to_string(),
        "/v2/models/resnet50/ready".to_string(),
        "/nothing/here".to_string(),
    ] {
        let r = http(addr, "GET", &path, &[], b"");
        assert_eq!(r.status, 404, "{path}");
        assert!(!r.error().is_empty());
    }
    let r = http(addr, "GET", &format!("/v2/models/{SMALL}/infer"), &[], b"");
    assert_eq!(r.status, 405);
    assert!(r.error().contains("method"));
    // A model of the zoo that this server does not serve is unknown too.
    let r = http(addr, "GET", "/v2/models/efficientnet_lite0", &[], b"");
    assert_eq!(r.status, 404);
}

#[test]
fn bad_requests_get_v2_json_errors() {
    let zoo = zoo();
    let server = start(zoo, &[SMALL], |c| c.max_body_bytes = 1 << 20);
    server.wait_ready(Duration::from_secs(30)).unwrap();
    let addr = server.addr();
    let fp32 = |shape: serde_json::Value, n: usize| {
        serde_json::json!({"inputs": [{"name": "input", "shape": shape, "datatype": "FP32",
                                       "data": vec![0.0f32; n]}]})
    };
    let cases: Vec<(&str, Reply, u16, &str)> = vec![
        (
            "wrong shape",
            post_json(
                addr,
                SMALL,
                &fp32(serde_json::json!([1, 3, 64, 64]), 3 * 64 * 64),
            ),
            400,
            "[1, 3, 128, 128]",
        ),
        (
            "data shorter than the shape",
            post_json(addr, SMALL, &fp32(serde_json::json!([1, 3, 128, 128]), 10)),
            400,
            "values of data",
        ),
        (
            "unsupported datatype",
            post_json(
                addr,
                SMALL,
                &serde_json::json!({"inputs": [{"name": "input", "shape": [1, 3, 128, 128],
                                                "datatype": "INT8", "data": [1]}]}),
            ),
            400,
            "unsupported datatype",
        ),
        (
            "undecodable image",
            post_json(
                addr,
                SMALL,
                &serde_json::json!({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES",
                                                "data": [b64(b"\xFF\xD8\xFF\xE0 truncated jpeg")]}]}),
            ),
            400,
            "undecodable image",
        ),
        (
            "not base64",
            post_json(
                addr,
                SMALL,
                &serde_json::json!({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES",
                                                "data": ["%%%"]}]}),
            ),
            400,
            "base64",
        ),
        (
            "malformed JSON",
            http(
                addr,
                "POST",
                &format!("/v2/models/{SMALL}/infer"),
                &[],
                b"{\"inputs\": [}",
            ),
            400,
            "malformed",
        ),
        (
            "two inputs",
            post_json(
                addr,
                SMALL,
                &serde_json::json!({"inputs": [
                    {"name": "a", "shape": [1], "datatype": "BYTES", "data": ["AA=="]},
                    {"name": "b", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}]}),
            ),
            400,
            "exactly one input",
        ),
        (
            "unknown output",
            post_json(
                addr,
                SMALL,
                &serde_json::json!({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": ["AA=="]}],
                                    "outputs": [{"name": "embedding"}]}),
            ),
            400,
            "unknown output",
        ),
        (
            "binary sizes that do not add up",
            post_binary(
                addr,
                SMALL,
                &serde_json::json!({"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES",
                                                "parameters": {"binary_data_size": 100}}]}),
                b"short",
            ),
            400,
            "binary",
        ),
        (
            "unknown model",
            post_json(addr, "resnet50", &fp32(serde_json::json!([1]), 1)),
            404,
            "unknown model 'resnet50'",
        ),
        (
            "body over the limit",
            http(
                addr,
                "POST",
                &format!("/v2/models/{SMALL}/infer"),
                &[
                    ("content-length", (2usize << 20).to_string()),
                    ("expect", "100-continue".into()),
                ],
                b"",
            ),
            413,
            "limit",
        ),
    ];
    for (what, reply, status, needle) in cases {
        assert_eq!(
            reply.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let error = reply.error();
        assert!(error.contains(needle), "{what}: '{error}' lacks '{needle}'");
    }
    // The crate's client types the same replies.
    let client = RemoteClient::new(&server.url(), RemoteConfig::default()).unwrap();
    let e = client
        .infer_image(SMALL, b"GIF89a not really", deadline())
        .unwrap_err();
    match e {
        RemoteError::Rejected {
            status, message, ..
        } => {
            assert_eq!(status, 400);
            assert!(message.contains("undecodable image"), "{message}");
        }
        other => panic!("expected a 400, got {other}"),
    }
    // The server is still fine afterwards.
    client
        .infer_image(SMALL, &image("n01440764_tench.JPEG"), deadline())
        .unwrap();
}

#[test]
fn a_full_queue_replies_503_with_retry_after_and_metrics_count_it() {
    let zoo = zoo();
    let server = start(zoo.clone(), &[BIG], |c| {
        c.workers = 1;
        c.queue = 1;
        c.io_threads = 2;
    });
    server.wait_ready(Duration::from_secs(60)).unwrap();
    let addr = server.addr();
    let v = zoo.variant(BIG).unwrap();
    let img = triage_zoo::decode_bytes(
        &image("n01443537_goldfish.JPEG"),
        Path::new("g"),
        &DecodeOptions::default(),
    )
    .unwrap();
    let blob: Arc<Vec<u8>> = Arc::new(
        v.prepare(&img)
            .unwrap()
            .as_slice()
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
    );
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, blob) = (barrier.clone(), blob.clone());
            std::thread::spawn(move || {
                let header = serde_json::json!({"inputs": [{"name": "input", "shape": [1, 3, 260, 260],
                    "datatype": "FP32", "parameters": {"binary_data_size": blob.len()}}]});
                barrier.wait();
                post_binary(addr, BIG, &header, &blob)
            })
        })
        .collect();
    let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(ok + busy.len(), n);
    assert!(ok >= 1, "nothing was served");
    assert!(
        !busy.is_empty(),
        "8 simultaneous requests on 1 worker + 1 queue slot: none refused"
    );
    for r in &busy {
        assert_eq!(r.headers.get("retry-after").map(String::as_str), Some("1"));
        assert!(r.error().contains("busy"), "{}", r.error());
    }
    let metrics = String::from_utf8(http(addr, "GET", "/metrics", &[], b"").body).unwrap();
    let line = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let m200 = format!("triage_serve_requests_total{{model=\"{BIG}\",status=\"200\"}}");
    let m503 = format!("triage_serve_requests_total{{model=\"{BIG}\",status=\"503\"}}");
    assert_eq!(line(&m200) as usize, ok);
    assert_eq!(line(&m503) as usize, busy.len());
    assert_eq!(line("triage_serve_queue_depth"), 0.0);
    let count = format!("triage_serve_inference_seconds_count{{model=\"{BIG}\"}}");
    assert_eq!(line(&count) as usize, ok);
}

#[test]
fn shutdown_drains_requests_in_flight() {
    let zoo = zoo();
    let server = start(zoo.clone(), &[BIG], |c| {
        c.workers = 1;
        c.queue = 8;
    });
    server.wait_ready(Duration::from_secs(60)).unwrap();
    let addr = server.addr();
    let jpeg = Arc::new(image("n01484850_great_white_shark.JPEG"));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (jpeg, url) = (jpeg.clone(), server.url());
            std::thread::spawn(move || {
                let c = RemoteClient::new(
                    &url,
                    RemoteConfig {
                        max_retries: 0,
                        ..RemoteConfig::default()
                    },
                )
                .unwrap();
                c.infer_image(BIG, &jpeg, deadline())
            })
        })
        .collect();
    // Let the three requests arrive (one runs, two wait), then stop the server.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let m = String::from_utf8(http(addr, "GET", "/metrics", &[], b"").body).unwrap();
        if m.lines().any(|l| l == "triage_serve_queue_depth 2") {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    server.shutdown().unwrap();
    for t in threads {
        let reply = t
            .join()
            .unwrap()
            .expect("a request in flight must be answered");
        assert_eq!(reply.logits.as_slice().len(), 1000);
    }
    // And the port is closed.
    let c = RemoteClient::new(
        &format!("http://{addr}"),
        RemoteConfig {
            max_retries: 0,
            ..RemoteConfig::default()
        },
    )
    .unwrap();
    let e = c.infer_image(BIG, &jpeg, deadline()).unwrap_err();
    assert!(matches!(e, RemoteError::ConnectionRefused { .. }), "{e}");
}

#[test]
fn the_cli_serves_until_sigterm_and_exits_cleanly() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_triage"))
        .args([
            "serve",
            "--models",
            SMALL,
            "--addr",
            "127.0.0.1:0",
            "--workers",
            "1",
        ])
        .env("TRIAGE_SHARED", common::shared())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "serving mobilenet_v1_025_128 on http://127.0.0.1:PORT (Ctrl-C to stop)"
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in '{line}'"))
        .to_string();
    let client = RemoteClient::new(&url, RemoteConfig::default()).unwrap();
    let t = Instant::now();
    while client.probe(deadline()).is_err() {
        assert!(t.elapsed() < Duration::from_secs(30), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let reply = client
        .infer_image(SMALL, &image("n01440764_tench.JPEG"), deadline())
        .unwrap();
    assert_eq!(reply.logits.as_slice().len(), 1000);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
