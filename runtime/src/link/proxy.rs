//! A user-space TCP proxy that replays a link trace (see the module documentation of
//! [`crate::link`]).

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::trace::{Trace, PACKET_BYTES};

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot resolve upstream address '{addr}'")]
    Upstream { addr: String },
    #[error("cannot start the proxy thread")]
    Thread(#[source] std::io::Error),
}

/// The emulated link: one trace per direction and the one-way propagation delay added to
/// each (half the round-trip time).
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Client-to-upstream capacity.
    pub uplink: Arc<Trace>,
    /// Upstream-to-client capacity.
    pub downlink: Arc<Trace>,
    pub one_way_delay: Duration,
    /// Bytes a direction buffers before it stops reading (so that TCP back-pressure reaches
    /// the sender, as a bottleneck queue would).
    pub max_queue_bytes: usize,
}

impl LinkConfig {
    /// Both directions from their traces, with `rtt` split evenly between them.
    pub fn new(uplink: Trace, downlink: Trace, rtt: Duration) -> Self {
        LinkConfig {
            uplink: Arc::new(uplink),
            downlink: Arc::new(downlink),
            one_way_delay: rtt / 2,
            max_queue_bytes: 1 << 20,
        }
    }
}

/// One direction of the link, shared by every connection: its delivery opportunities are
/// handed out first come, first served, like mahimahi's single queue per direction.
struct Direction {
    name: &'static str,
    trace: Arc<Trace>,
    /// Index of the next unused opportunity.
    next: Mutex<u64>,
}

impl Direction {
    /// Claims the first unused opportunity at or after trace time `arrival_ms`; returns its
    /// trace time in ms. Opportunities that passed while nothing was queued are lost.
    fn claim(&self, arrival_ms: f64) -> u64 {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let j = (*next).max(self.trace.first_opportunity_at_or_after(arrival_ms));
        *next = j + 1;
        self.trace.opportunity_time(j)
    }
}

/// Shared state of a running proxy.
struct Shared {
    origin: Instant,
    upstream: SocketAddr,
    config: LinkConfig,
    up: Direction,
    down: Direction,
    stop: AtomicBool,
    next_id: AtomicU64,
    /// Open connections (client and upstream sockets), so that `stop` can close them.
    open: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

impl Shared {
    fn ms_since_origin(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.origin).as_secs_f64() * 1e3
    }

    fn at_trace_ms(&self, t_ms: u64) -> Instant {
        self.origin + Duration::from_millis(t_ms)
    }
}

/// A running link emulator. Dropping it (or [`LinkEmulator::stop`]) closes the listener and
/// every proxied connection.
pub struct LinkEmulator {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl LinkEmulator {
    /// Listens on `listen` and forwards every accepted connection to `upstream` through the
    /// emulated link. Trace time 0 is now.
    pub fn start(
        listen: impl ToSocketAddrs + std::fmt::Display,
        upstream: impl ToSocketAddrs + std::fmt::Display,
        config: LinkConfig,
    ) -> Result<Self, LinkError> {
        let listen_s = listen.to_string();
        let listener = TcpListener::bind(listen).map_err(|source| LinkError::Listen {
            addr: listen_s.clone(),
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| LinkError::Listen {
            addr: listen_s,
            source,
        })?;
        let upstream_s = upstream.to_string();
        let upstream = upstream
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or(LinkError::Upstream { addr: upstream_s })?;
        let shared = Arc::new(Shared {
            origin: Instant::now(),
            upstream,
            up: Direction {
                name: "up",
                trace: config.uplink.clone(),
                next: Mutex::new(0),
            },
            down: Direction {
                name: "down",
                trace: config.downlink.clone(),
                next: Mutex::new(0),
            },
            config,
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("link-accept".into())
            .spawn(move || accept_loop(listener, s))
            .map_err(LinkError::Thread)?;
        tracing::info!(
            listen = %local_addr,
            upstream = %upstream,
            uplink = %shared.config.uplink.path().display(),
            downlink = %shared.config.downlink.path().display(),
            one_way_delay_ms = shared.config.one_way_delay.as_secs_f64() * 1e3,
            "link emulator running"
        );
        Ok(LinkEmulator {
            local_addr,
            shared,
            accept: Some(accept),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The instant at which trace time is 0.
    pub fn origin(&self) -> Instant {
        self.shared.origin
    }

    /// Trace time in ms at `at`.
    pub fn trace_ms(&self, at: Instant) -> f64 {
        self.shared.ms_since_origin(at)
    }

    /// Blocks until the proxy is stopped from another thread (for the CLI).
    pub fn wait(mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }

    /// Closes the listener and every proxied connection.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.local_addr, Duration::from_millis(200));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let open = std::mem::take(&mut *lock(&self.shared.open));
        for (client, upstream) in open.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for LinkEmulator {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.shutdown();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let client = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("link-conn".into())
            .spawn(move || connection(client, s));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a connection thread");
        }
    }
}

/// Proxies one connection: two pumps, each a reader and a scheduler thread.
fn connection(client: TcpStream, shared: Arc<Shared>) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let peer = client.peer_addr().ok();
    let upstream = match TcpStream::connect(shared.upstream) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(upstream = %shared.upstream, error = %e, "upstream unreachable: closing the client");
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    // Packets are timed here; Nagle's algorithm must not hold them back.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let clones = (
        client.try_clone(),
        upstream.try_clone(),
        client.try_clone(),
        upstream.try_clone(),
    );
    let (Ok(c_reg), Ok(u_reg), Ok(c2), Ok(u2)) = clones else {
        tracing::warn!("cannot clone sockets: closing the connection");
        return;
    };
    lock(&shared.open).insert(id, (c_reg, u_reg));
    tracing::debug!(id, ?peer, "link connection open");
    let up = Pump::spawn(shared.clone(), true, client, upstream);
    let down = Pump::spawn(shared.clone(), false, u2, c2);
    for p in [up, down].into_iter().flatten() {
        p.join();
    }
    lock(&shared.open).remove(&id);
    tracing::debug!(id, "link connection closed");
}

/// Bytes read from the source, waiting for the link.
struct Queue {
    chunks: VecDeque<(f64, Vec<u8>)>,
    bytes: usize,
    eof: bool,
    closed: bool,
}

struct PumpState {
    q: Mutex<Queue>,
    cv: Condvar,
}

struct Pump {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Pump {
    fn spawn(shared: Arc<Shared>, uplink: bool, src: TcpStream, dst: TcpStream) -> Option<Pump> {
        let state = Arc::new(PumpState {
            q: Mutex::new(Queue {
                chunks: VecDeque::new(),
                bytes: 0,
                eof: false,
                closed: false,
            }),
            cv: Condvar::new(),
        });
        let src2 = src.try_clone().ok()?;
        let (s1, st1) = (shared.clone(), state.clone());
        let reader = std::thread::Builder::new()
            .name("link-read".into())
            .spawn(move || read_side(s1, st1, src))
            .ok()?;
        let writer = std::thread::Builder::new()
            .name("link-write".into())
            .spawn(move || write_side(shared, uplink, state, src2, dst));
        match writer {
            Ok(writer) => Some(Pump { reader, writer }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start a link thread");
                None
            }
        }
    }

    fn join(self) {
        let _ = self.writer.join();
        let _ = self.reader.join();
    }
}

fn read_side(shared: Arc<Shared>, state: Arc<PumpState>, mut src: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let max = shared.config.max_queue_bytes.max(PACKET_BYTES as usize);
    loop {
        let n = match src.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        let now_ms = shared.ms_since_origin(Instant::now());
        let mut q = lock(&state.q);
        if n == 0 {
            q.eof = true;
            state.cv.notify_all();
            return;
        }
        q.chunks.push_back((now_ms, buf[..n].to_vec()));
        q.bytes += n;
        state.cv.notify_all();
        while q.bytes >= max && !q.closed {
            q = state.cv.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.closed {
            return;
        }
    }
}

/// Moves queued bytes across the link: at each claimed opportunity up to 1500 queued bytes
/// form a packet, which is written to the destination one-way delay later. Opportunities
/// are claimed one at a time, for the oldest queued byte; packets in flight (inside the
/// delay) are kept in order and written when due.
fn write_side(
    shared: Arc<Shared>,
    uplink: bool,
    state: Arc<PumpState>,
    src: TcpStream,
    mut dst: TcpStream,
) {
    let dir = if uplink { &shared.up } else { &shared.down };
    let delay = shared.config.one_way_delay;
    let mut claimed: Option<u64> = None;
    let mut in_flight: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut q = lock(&state.q);
    loop {
        if q.closed {
            break;
        }
        if claimed.is_none() {
            if let Some(&(arrival, _)) = q.chunks.front() {
                claimed = Some(dir.claim(arrival));
            }
        }
        let now = Instant::now();
        let opportunity = claimed.map(|t| shared.at_trace_ms(t));
        if let Some(at) = opportunity.filter(|at| *at <= now) {
            let packet = take_packet(&mut q);
            state.cv.notify_all();
            in_flight.push_back((at + delay, packet));
            claimed = None;
            continue;
        }
        if let Some(&(due, _)) = in_flight.front() {
            if due <= now {
                let Some((_, packet)) = in_flight.pop_front() else {
                    continue;
                };
                drop(q);
                let ok = dst.write_all(&packet).is_ok();
                q = lock(&state.q);
                if !ok {
                    tracing::debug!(direction = dir.name, "destination closed");
                    q.closed = true;
                    state.cv.notify_all();
                    let _ = src.shutdown(Shutdown::Both);
                    break;
                }
                continue;
            }
        }
        if q.eof && q.chunks.is_empty() && claimed.is_none() && in_flight.is_empty() {
            let _ = dst.shutdown(Shutdown::Write);
            break;
        }
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let wake = [opportunity, in_flight.front().map(|(d, _)| *d)]
            .into_iter()
            .flatten()
            .min();
        // Wake for the next event, for new data, and at least every 100 ms to notice a stop.
        let timeout = wake
            .map(|w| w.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        q = state
            .cv
            .wait_timeout(q, timeout)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

/// Up to one packet's worth of the oldest queued bytes.
fn take_packet(q: &mut Queue) -> Vec<u8> {
    let mut packet = Vec::with_capacity(PACKET_BYTES as usize);
    while packet.len() < PACKET_BYTES as usize {
        let Some((_, chunk)) = q.chunks.front_mut() else {
            break;
        };
        let want = PACKET_BYTES as usize - packet.len();
        if chunk.len() <= want {
            packet.extend_from_slice(chunk);
            q.chunks.pop_front();
        } else {
            packet.extend_from_slice(&chunk[..want]);
            chunk.drain(..want);
        }
    }
    q.bytes -= packet.len();
    packet
}
