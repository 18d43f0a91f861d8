//! The trace-driven link emulator on loopback with the real cellular traces: bytes take the
//! time the trace predicts, the RTT adds its delay, and an offloaded inference through the
//! emulated link is timed and learnt by the network estimator.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use triage_runtime::link::{LinkConfig, LinkEmulator, Trace};
use triage_runtime::network::NetworkEstimator;
use triage_runtime::remote::{RemoteClient, RemoteConfig};
use triage_runtime::server::{ServeConfig, ServerHandle};
use triage_zoo::{DecodeOptions, Zoo};

fn trace(name: &str) -> Trace {
    Trace::load(&common::shared().join("network-traces").join(name)).unwrap()
}

/// Tolerance of a measured delivery time against the trace's prediction: thread wake-ups on
/// a loaded 2-core machine are late by milliseconds, never early.
fn assert_close(what: &str, measured_ms: f64, expected_ms: f64) {
    let slack = 40.0 + 0.05 * expected_ms;
    eprintln!("{what}: measured {measured_ms:.1} ms, trace predicts {expected_ms:.1} ms");
    assert!(
        measured_ms >= expected_ms - 3.0 && measured_ms <= expected_ms + slack,
        "{what}: measured {measured_ms:.1} ms, the trace predicts {expected_ms:.1} ms (+{slack:.0} allowed)"
    );
}

/// A server that reads `n` bytes, reports the instant the last one arrived, and then sends
/// `reply` bytes back.
fn sink(n: usize, reply: usize) -> (SocketAddr, mpsc::Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < n {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "upstream saw EOF after {got} of {n} bytes");
            got += k;
        }
        tx.send(Instant::now()).unwrap();
        s.write_all(&vec![7u8; reply]).unwrap();
        let _ = s.shutdown(Shutdown::Write);
        let _ = s.read(&mut buf);
    });
    (addr, rx)
}

#[test]
fn uplink_bytes_take_the_time_the_trace_predicts() {
    let up = trace("Verizon-LTE-short.up");
    let down = trace("Verizon-LTE-short.down");
    let n = 600_000;
    let (upstream, done) = sink(n, 0);
    let link = LinkEmulator::start(
        "127.0.0.1:0",
        upstream,
        LinkConfig::new(up.clone(), down, Duration::ZERO),
    )
    .unwrap();
    let mut c = TcpStream::connect(link.local_addr()).unwrap();
    let sent = Instant::now();
    c.write_all(&vec![1u8; n]).unwrap();
    let arrived = done.recv_timeout(Duration::from_secs(10)).unwrap();
    let start_ms = link.trace_ms(sent);
    let expected = up.delivery_time_ms(start_ms, n as u64) - start_ms;
    let measured = arrived.duration_since(sent).as_secs_f64() * 1e3;
    assert_close("600 kB up", measured, expected);
    // The emulated link is far slower than loopback: the check above is not vacuous.
    assert!(expected > 300.0, "{expected}");
    link.stop();
}

#[test]
fn downlink_bytes_and_the_rtt_take_the_time_the_trace_predicts() {
    let up = trace("TMobile-LTE-short.up");
    let down = trace("Verizon-LTE-short.down");
    let rtt = Duration::from_millis(120);
    let n_down = 500_000;
    let (upstream, request_arrived) = sink(10, n_down);
    let link = LinkEmulator::start(
        "127.0.0.1:0",
        upstream,
        LinkConfig::new(up.clone(), down.clone(), rtt),
    )
    .unwrap();
    let mut c = TcpStream::connect(link.local_addr()).unwrap();
    let sent = Instant::now();
    c.write_all(b"0123456789").unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < n_down {
        let k = c.read(&mut buf).unwrap();
        assert!(k > 0, "EOF after {got} bytes");
        got += k;
    }
    let done = Instant::now();
    let one_way = rtt.as_secs_f64() * 1e3 / 2.0;
    let t0 = link.trace_ms(sent);
    // Up: one packet, then half the RTT.
    let at_server = link.trace_ms(request_arrived.recv().unwrap());
    let expected_up = up.delivery_time_ms(t0, 10) + one_way;
    assert_close("request up", at_server - t0, expected_up - t0);
    // Down: the reply from when the server sent it, then half the RTT.
    let expected_down = down.delivery_time_ms(at_server, n_down as u64) + one_way;
    assert_close(
        "500 kB down",
        link.trace_ms(done) - at_server,
        expected_down - at_server,
    );
    assert!(expected_down - t0 > rtt.as_secs_f64() * 1e3);
    link.stop();
}

#[test]
fn offloading_through_the_emulated_link_is_timed_and_learnt() {
    let zoo = Arc::new(Zoo::open(common::shared().join("zoo")).unwrap());
    let model = "mobilenet_v1_025_128";
    let mut config = ServeConfig::new(vec![model.to_string()]);
    config.workers = 1;
    config.io_threads = 1;
    let server = ServerHandle::start("127.0.0.1:0".parse().unwrap(), zoo.clone(), config).unwrap();
    server.wait_ready(Duration::from_secs(30)).unwrap();
    let up = trace("Verizon-LTE-short.up");
    let rtt = Duration::from_millis(80);
    let link = LinkEmulator::start(
        "127.0.0.1:0",
        server.addr(),
        LinkConfig::new(up.clone(), trace("Verizon-LTE-short.down"), rtt),
    )
    .unwrap();
    let client = RemoteClient::new(
        &format!("http://{}", link.local_addr()),
        RemoteConfig::default(),
    )
    .unwrap();
    let mut estimator = NetworkEstimator::default();
    let deadline = || Instant::now() + Duration::from_secs(20);
    for _ in 0..3 {
        let rtt_sample = client.probe(deadline()).unwrap();
        assert!(rtt_sample >= rtt, "{rtt_sample:?}");
        estimator.observe_rtt(Instant::now(), rtt_sample);
    }
    let v = zoo.variant(model).unwrap();
    let opts = Zoo::decode_options_for([v], DecodeOptions::default());
    let t_first = link.trace_ms(Instant::now());
    for name in [
        "n01440764_tench.JPEG",
        "n01443537_goldfish.JPEG",
        "n01484850_great_white_shark.JPEG",
    ] {
        let jpeg = std::fs::read(
            common::shared()
                .join("datasets/imagenet-sample/images")
                .join(name),
        )
        .unwrap();
        let start_ms = link.trace_ms(Instant::now());
        let reply = client.infer_image(model, &jpeg, deadline()).unwrap();
        let img = triage_zoo::decode_bytes(&jpeg, Path::new(name), &opts).unwrap();
        assert_eq!(reply.logits, v.classify(&img).unwrap(), "{name}");
        // The exchange cannot beat the trace: upload at its capacity plus one RTT.
        let floor = up.delivery_time_ms(start_ms, reply.timing.upload_bytes) - start_ms
            + rtt.as_secs_f64() * 1e3;
        let wall = reply.timing.wall.as_secs_f64() * 1e3;
        assert!(
            wall >= floor - 3.0,
            "{name}: {wall:.1} ms < trace floor {floor:.1} ms"
        );
        estimator.observe_exchange(
            Instant::now(),
            reply.timing.upload_bytes,
            reply.timing.wall,
            reply.timing.server_compute,
        );
    }
    let t_last = link.trace_ms(Instant::now());
    let est = estimator.estimate(Instant::now());
    let learnt_rtt = est.rtt.unwrap().as_secs_f64() * 1e3;
    assert!(
        (80.0..200.0).contains(&learnt_rtt),
        "RTT estimate {learnt_rtt:.1} ms"
    );
    let bps = est.uplink_bps.unwrap();
    let capacity = up.capacity_bps(t_first, t_last);
    eprintln!(
        "learnt: RTT {learnt_rtt:.1} ms, uplink {:.2} Mbit/s; trace {:.2} Mbit/s",
        bps / 1e6,
        capacity / 1e6
    );
    assert!(
        bps > capacity / 3.0 && bps < capacity * 1.5,
        "uplink estimate {:.2} Mbit/s vs the trace's {:.2} Mbit/s over the same time",
        bps / 1e6,
        capacity / 1e6
    );
    link.stop();
    server.shutdown().unwrap();
}
