//! The v2 client against small hand-written servers on loopback that misbehave in one way
//! each: every fault must come back as its typed error, within the deadline, never a panic.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use triage_runtime::remote::{
    BreakerConfig, BreakerState, Phase, RemoteClient, RemoteConfig, RemoteError,
};

/// One parsed HTTP request.
struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

fn read_request(s: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut req = Request {
        head,
        body: Vec::new(),
    };
    let n: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    req.body = vec![0; n];
    s.read_exact(&mut req.body).ok()?;
    Some(req)
}

fn respond(s: &mut TcpStream, status: &str, extra_headers: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\n{extra_headers}connection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let _ = s.flush();
}

fn logits_json(model: &str, shape: &[i64], n: usize) -> Vec<u8> {
    let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - 3.0).collect();
    serde_json::to_vec(&serde_json::json!({
        "model_name": model,
        "model_version": "1",
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": shape, "data": data}],
    }))
    .unwrap()
}

/// A server that handles every connection with `f`, counting connections.
struct Fake {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    _thread: JoinHandle<()>,
}

fn fake(f: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    let f = Arc::new(f);
    let thread = std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let i = count.fetch_add(1, Ordering::SeqCst);
            let f = f.clone();
            std::thread::spawn(move || f(conn, i));
        }
    });
    Fake {
        addr,
        connections,
        _thread: thread,
    }
}

fn client(addr: SocketAddr, config: RemoteConfig) -> RemoteClient {
    RemoteClient::new(&format!("http://{addr}"), config).unwrap()
}

fn no_retries() -> RemoteConfig {
    RemoteConfig {
        max_retries: 0,
        ..RemoteConfig::default()
    }
}

const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0 not really a jpeg";

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

#[test]
fn a_good_reply_is_validated_and_timed_and_the_request_is_triton_shaped() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let seen2 = seen.clone();
    let f = fake(move |mut s, _| {
        if let Some(req) = read_request(&mut s) {
            // Recorded before replying: the client checks it as soon as it has the reply.
            *seen2.lock().unwrap() = Some(req);
            let body = logits_json("m1", &[1, 1000], 1000);
            respond(
                &mut s,
                "200 OK",
                "content-type: application/json\r\n",
                &body,
            );
        }
    });
    let c = client(f.addr, RemoteConfig::default());
    let reply = c.infer_image("m1", JPEG, soon(5000)).unwrap();
    assert_eq!(reply.logits.0.len(), 1000);
    assert_eq!(reply.logits.0[1], 0.01 - 3.0);
    assert_eq!(reply.timing.attempts, 1);
    assert!(reply.timing.wall > Duration::ZERO && reply.timing.wall <= reply.timing.total);
    assert_eq!(reply.timing.server_compute, None);

    let req = seen.lock().unwrap().take().unwrap();
    assert!(req.head.starts_with("POST /v2/models/m1/infer HTTP/1.1"));
    assert_eq!(reply.timing.upload_bytes, req.body.len() as u64);
    let n: usize = req
        .header("inference-header-content-length")
        .unwrap()
        .parse()
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&req.body[..n]).unwrap();
    assert_eq!(header["inputs"][0]["datatype"], "BYTES");
    assert_eq!(
        header["inputs"][0]["parameters"]["binary_data_size"],
        JPEG.len() + 4
    );
    assert_eq!(header["outputs"][0]["name"], "logits");
    assert_eq!(&req.body[n..n + 4], &(JPEG.len() as u32).to_le_bytes());
    assert_eq!(&req.body[n + 4..], JPEG);
}

#[test]
fn server_down_is_connection_refused_after_bounded_retries() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let c = client(
        addr,
        RemoteConfig {
            max_retries: 2,
            backoff_initial: Duration::from_millis(20),
            ..RemoteConfig::default()
        },
    );
    let t = Instant::now();
    let e = c.infer_image("m", JPEG, soon(5000)).unwrap_err();
    assert!(matches!(e, RemoteError::ConnectionRefused { .. }), "{e}");
    // Two backoffs of at most 20 and 40 ms, nowhere near the deadline.
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_slow_server_times_out_at_the_deadline() {
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            std::thread::sleep(Duration::from_secs(3));
            respond(&mut s, "200 OK", "", &logits_json("m", &[1, 1000], 1000));
        }
    });
    let c = client(f.addr, RemoteConfig::default());
    let t = Instant::now();
    let e = c.infer_image("m", JPEG, soon(300)).unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, RemoteError::Timeout { .. }), "{e}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1000),
        "{took:?}"
    );
    // A deadline already passed fails at once without connecting.
    let before = f.connections.load(Ordering::SeqCst);
    let e = c.infer_image("m", JPEG, Instant::now()).unwrap_err();
    assert!(matches!(e, RemoteError::Timeout { .. }), "{e}");
    assert_eq!(f.connections.load(Ordering::SeqCst), before);
}

#[test]
fn http_500_is_a_server_error_with_its_message_and_is_not_retried() {
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            respond(
                &mut s,
                "500 Internal Server Error",
                "content-type: application/json\r\n",
                br#"{"error": "the model exploded"}"#,
            );
        }
    });
    let c = client(f.addr, RemoteConfig::default());
    let e = c.infer_image("m", JPEG, soon(5000)).unwrap_err();
    match &e {
        RemoteError::Server {
            status, message, ..
        } => {
            assert_eq!(*status, 500);
            assert_eq!(message, "the model exploded");
        }
        other => panic!("expected a server error, got {other}"),
    }
    assert_eq!(f.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_503_is_retried_and_the_retry_succeeds() {
    let f = fake(|mut s, i| {
        if read_request(&mut s).is_some() {
            if i == 0 {
                respond(
                    &mut s,
                    "503 Service Unavailable",
                    "",
                    br#"{"error": "busy"}"#,
                );
            } else {
                respond(&mut s, "200 OK", "", &logits_json("m", &[1, 1000], 1000));
            }
        }
    });
    let c = client(
        f.addr,
        RemoteConfig {
            backoff_initial: Duration::from_millis(10),
            ..RemoteConfig::default()
        },
    );
    let reply = c.infer_image("m", JPEG, soon(5000)).unwrap();
    assert_eq!(reply.timing.attempts, 2);
    assert_eq!(f.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn malformed_json_is_a_malformed_reply() {
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            respond(
                &mut s,
                "200 OK",
                "",
                b"{\"model_name\": \"m\", \"outputs\": [",
            );
        }
    });
    let e = client(f.addr, no_retries())
        .infer_image("m", JPEG, soon(5000))
        .unwrap_err();
    assert!(matches!(e, RemoteError::MalformedReply { .. }), "{e}");
}

#[test]
fn a_wrong_tensor_shape_is_rejected() {
    // A server returning the MobileNet's raw 1001 outputs instead of the 1000 classes.
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            respond(&mut s, "200 OK", "", &logits_json("m", &[1, 1001], 1001));
        }
    });
    let e = client(f.addr, no_retries())
        .infer_image("m", JPEG, soon(5000))
        .unwrap_err();
    match e {
        RemoteError::WrongShape { shape, .. } => assert_eq!(shape, vec![1, 1001]),
        other => panic!("expected a wrong shape, got {other}"),
    }
}

#[test]
fn a_shape_that_lies_about_its_data_is_malformed() {
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            respond(&mut s, "200 OK", "", &logits_json("m", &[1, 1000], 999));
        }
    });
    let e = client(f.addr, no_retries())
        .infer_image("m", JPEG, soon(5000))
        .unwrap_err();
    assert!(matches!(e, RemoteError::MalformedReply { .. }), "{e}");
}

#[test]
fn a_reply_for_another_model_is_rejected() {
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            respond(
                &mut s,
                "200 OK",
                "",
                &logits_json("efficientnet_lite0", &[1, 1000], 1000),
            );
        }
    });
    let e = client(f.addr, no_retries())
        .infer_image("efficientnet_lite2", JPEG, soon(5000))
        .unwrap_err();
    match e {
        RemoteError::WrongModel { want, got, .. } => {
            assert_eq!(want, "efficientnet_lite2");
            assert_eq!(got, "efficientnet_lite0");
        }
        other => panic!("expected a wrong model, got {other}"),
    }
}

#[test]
fn non_finite_logits_in_a_binary_reply_are_rejected() {
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            let mut values = vec![0.5f32; 1000];
            values[7] = f32::NAN;
            let blob: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let header = serde_json::to_vec(&serde_json::json!({
                "model_name": "m",
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1, 1000],
                             "parameters": {"binary_data_size": blob.len()}}],
            }))
            .unwrap();
            let extra = format!("inference-header-content-length: {}\r\n", header.len());
            respond(&mut s, "200 OK", &extra, &[header, blob].concat());
        }
    });
    let e = client(f.addr, no_retries())
        .infer_image("m", JPEG, soon(5000))
        .unwrap_err();
    match e {
        RemoteError::NonFinite { index, .. } => assert_eq!(index, 7),
        other => panic!("expected a non-finite error, got {other}"),
    }
}

#[test]
fn a_connection_reset_mid_body_is_typed_as_such() {
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            let body = logits_json("m", &[1, 1000], 1000);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body[..body.len() / 3]);
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(50));
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    });
    let e = client(f.addr, no_retries())
        .infer_image("m", JPEG, soon(5000))
        .unwrap_err();
    match e {
        RemoteError::ConnectionReset { phase, .. } => assert_eq!(phase, Phase::ReplyBody),
        other => panic!("expected a reset mid-body, got {other}"),
    }
}

#[test]
fn a_connection_dropped_before_the_reply_is_a_reset_and_is_retried() {
    let f = fake(|mut s, i| {
        if read_request(&mut s).is_some() {
            if i == 0 {
                drop(s);
            } else {
                respond(&mut s, "200 OK", "", &logits_json("m", &[1, 1000], 1000));
            }
        }
    });
    let c = client(f.addr, RemoteConfig::default());
    let reply = c.infer_image("m", JPEG, soon(5000)).unwrap();
    assert_eq!(reply.timing.attempts, 2);
    let f2 = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            drop(s);
        }
    });
    let e = client(f2.addr, no_retries())
        .infer_image("m", JPEG, soon(5000))
        .unwrap_err();
    match e {
        RemoteError::ConnectionReset { phase, .. } => assert_eq!(phase, Phase::Request),
        other => panic!("expected a reset before the reply, got {other}"),
    }
}

#[test]
fn a_4xx_is_rejected_without_retry_and_keeps_the_breaker_closed() {
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            respond(
                &mut s,
                "404 Not Found",
                "",
                br#"{"error": "unknown model 'm'"}"#,
            );
        }
    });
    let c = client(
        f.addr,
        RemoteConfig {
            breaker: BreakerConfig {
                failure_threshold: 1,
                cool_down: Duration::from_secs(60),
            },
            ..RemoteConfig::default()
        },
    );
    for _ in 0..3 {
        let e = c.infer_image("m", JPEG, soon(5000)).unwrap_err();
        assert!(
            matches!(e, RemoteError::Rejected { status: 404, .. }),
            "{e}"
        );
    }
    assert_eq!(c.breaker_state(), BreakerState::Closed);
    assert_eq!(f.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn the_circuit_opens_fails_fast_probes_and_closes() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let f = fake(move |mut s, _| {
        if read_request(&mut s).is_some() {
            if h.load(Ordering::SeqCst) {
                respond(&mut s, "200 OK", "", &logits_json("m", &[1, 1000], 1000));
            } else {
                respond(
                    &mut s,
                    "500 Internal Server Error",
                    "",
                    b"{\"error\": \"down\"}",
                );
            }
        }
    });
    let cool = Duration::from_millis(300);
    let c = client(
        f.addr,
        RemoteConfig {
            max_retries: 0,
            breaker: BreakerConfig {
                failure_threshold: 2,
                cool_down: cool,
            },
            ..RemoteConfig::default()
        },
    );
    for _ in 0..2 {
        assert_eq!(c.breaker_state(), BreakerState::Closed);
        let e = c.infer_image("m", JPEG, soon(5000)).unwrap_err();
        assert!(matches!(e, RemoteError::Server { status: 500, .. }), "{e}");
    }
    assert_eq!(c.breaker_state(), BreakerState::Open);
    // Open: refused at once, nothing sent.
    let t = Instant::now();
    let e = c.infer_image("m", JPEG, soon(5000)).unwrap_err();
    assert!(t.elapsed() < Duration::from_millis(50));
    match e {
        RemoteError::CircuitOpen { failures, retry_in } => {
            assert_eq!(failures, 2);
            assert!(retry_in <= cool);
        }
        other => panic!("expected the circuit open, got {other}"),
    }
    assert_eq!(f.connections.load(Ordering::SeqCst), 2);
    // After the cool-down one probe goes through; it fails: open again.
    std::thread::sleep(cool);
    assert_eq!(c.breaker_state(), BreakerState::HalfOpen);
    let e = c.infer_image("m", JPEG, soon(5000)).unwrap_err();
    assert!(matches!(e, RemoteError::Server { .. }), "{e}");
    assert_eq!(c.breaker_state(), BreakerState::Open);
    assert_eq!(f.connections.load(Ordering::SeqCst), 3);
    // The server recovers; the next probe succeeds and closes the circuit.
    healthy.store(true, Ordering::SeqCst);
    std::thread::sleep(cool);
    c.infer_image("m", JPEG, soon(5000)).unwrap();
    assert_eq!(c.breaker_state(), BreakerState::Closed);
    c.infer_image("m", JPEG, soon(5000)).unwrap();
    assert_eq!(f.connections.load(Ordering::SeqCst), 5);
}

#[test]
fn garbage_instead_of_http_is_a_typed_error() {
    let f = fake(|mut s, _| {
        if read_request(&mut s).is_some() {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n");
        }
    });
    let e = client(f.addr, no_retries())
        .infer_image("m", JPEG, soon(5000))
        .unwrap_err();
    assert!(
        matches!(
            e,
            RemoteError::MalformedReply { .. } | RemoteError::Transport { .. }
        ),
        "{e}"
    );
}
