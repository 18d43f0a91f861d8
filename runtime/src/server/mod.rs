//! `triage serve`: zoo variants behind the Open Inference Protocol v2 REST API (KServe,
//! Triton), so that a device can offload an image to a bigger model.
//!
//! - `GET /v2/health/live`, `GET /v2/health/ready` (ready once every served model is loaded),
//!   `GET /v2/models/{name}` (metadata), `GET /v2/models/{name}/ready`,
//!   `POST /v2/models/{name}/infer`, `GET /v2` and Prometheus text at `GET /metrics`.
//! - An inference takes one input: the variant's preprocessed FP32 tensor `[1, 3, S, S]`, or
//!   one encoded JPEG/PNG/WebP image as a BYTES tensor `[1]` (base64 in JSON, or raw in the
//!   binary tensor extension). Images are decoded as a device running only that variant
//!   would decode them ([`Zoo::decode_options_for`]), so the answer equals local execution.
//!   Outputs: `logits` FP32 `[1, 1000]` (ImageNet classes, after the variant's label offset)
//!   and, on request, `probabilities`; JSON or binary.
//! - Work runs on `workers` dedicated threads behind a bounded queue: when the queue is full
//!   the reply is 503 with `Retry-After` at once. Bodies over `max_body_bytes` get 413, bad
//!   shapes, datatypes and undecodable images 400, unknown models 404; every error is
//!   `{"error": "..."}`.
//! - Shutdown is graceful: on the shutdown signal the listener closes, requests in flight are
//!   answered, then the workers are joined.

mod api;
mod infer;
mod metrics;

pub use api::ApiError;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use triage_zoo::{DecodeOptions, Zoo};

use infer::Pool;
use metrics::Metrics;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("model '{0}' is not in the zoo")]
    UnknownModel(String),
    #[error("no models to serve")]
    NoModels,
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load model '{model}': {message}")]
    Load { model: String, message: String },
    #[error("models not ready after {0:?}")]
    NotReady(Duration),
    #[error("cannot set up the metrics registry")]
    Metrics(#[from] prometheus::Error),
    #[error("the server thread panicked")]
    Panicked,
    #[error("server I/O failed")]
    Io(#[from] std::io::Error),
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Variants to serve (loaded in the background at start).
    pub models: Vec<String>,
    /// Inference threads (tract runs one inference on one thread).
    pub workers: usize,
    /// Admitted requests that may wait for a worker beyond those running.
    pub queue: usize,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `Retry-After` sent with 503 replies (whole seconds, at least 1).
    pub retry_after: Duration,
    /// Base options for decoding uploaded images.
    pub decode: DecodeOptions,
    /// Threads of the async runtime (HTTP and JSON framing) when the server makes its own.
    pub io_threads: usize,
}

impl ServeConfig {
    /// Defaults for serving `models`: one worker per core, a queue of 4 per worker, 32 MiB
    /// bodies.
    pub fn new(models: Vec<String>) -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        ServeConfig {
            models,
            workers: cores,
            queue: 4 * cores,
            max_body_bytes: 32 << 20,
            retry_after: Duration::from_secs(1),
            decode: DecodeOptions::default(),
            io_threads: cores.min(4),
        }
    }
}

/// Loading progress of the served models.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadStatus {
    Loading,
    Ready,
    Failed { model: String, message: String },
}

/// Everything the handlers share.
pub(crate) struct AppState {
    zoo: Arc<Zoo>,
    models: Vec<String>,
    config: ServeConfig,
    pool: Pool,
    metrics: Metrics,
    load: Mutex<LoadStatus>,
}

impl AppState {
    fn serves(&self, name: &str) -> bool {
        self.models.iter().any(|m| m == name)
    }

    fn is_loaded(&self, name: &str) -> bool {
        self.serves(name) && self.zoo.variant(name).is_ok_and(|v| v.is_loaded())
    }

    fn all_loaded(&self) -> bool {
        self.models.iter().all(|m| self.is_loaded(m))
    }

    fn load_status(&self) -> LoadStatus {
        self.load.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A bound, not yet serving, server. Workers are running and models are loading.
pub struct Server {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
}

impl Server {
    /// Validates the model list, binds `addr` (port 0 picks a free port), starts the workers
    /// and starts loading the models in the background.
    pub async fn bind(
        addr: SocketAddr,
        zoo: Arc<Zoo>,
        config: ServeConfig,
    ) -> Result<Server, ServeError> {
        let mut models: Vec<String> = Vec::new();
        for m in &config.models {
            zoo.variant(m)
                .map_err(|_| ServeError::UnknownModel(m.clone()))?;
            if !models.contains(m) {
                models.push(m.clone());
            }
        }
        if models.is_empty() {
            return Err(ServeError::NoModels);
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener.local_addr()?;
        let metrics = Metrics::new()?;
        let pool = Pool::start(
            zoo.clone(),
            config.decode,
            config.workers,
            config.queue,
            metrics.clone(),
        )?;
        let state = Arc::new(AppState {
            zoo,
            models,
            config,
            pool,
            metrics,
            load: Mutex::new(LoadStatus::Loading),
        });
        let st = state.clone();
        std::thread::Builder::new()
            .name("model-loader".into())
            .spawn(move || load_models(&st))?;
        tracing::info!(%addr, models = ?state.models, workers = state.config.workers, queue = state.config.queue, "serving");
        Ok(Server {
            listener,
            addr,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn load_status(&self) -> LoadStatus {
        self.state.load_status()
    }

    /// Serves until `shutdown` completes, then drains: requests in flight are answered, the
    /// workers finish and are joined.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let app = api::router(self.state.clone());
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        tracing::info!("listener closed; joining workers");
        let st = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || st.pool.close_and_join()).await;
        tracing::info!("server stopped");
        result.map_err(ServeError::Io)
    }
}

fn load_models(st: &AppState) {
    for m in &st.models {
        let start = Instant::now();
        let result = st
            .zoo
            .variant(m)
            .map_err(|e| e.to_string())
            .and_then(|v| v.load().map(|_| ()).map_err(|e| e.to_string()));
        match result {
            Ok(()) => {
                tracing::info!(model = %m, ms = start.elapsed().as_secs_f64() * 1e3, "model loaded")
            }
            Err(message) => {
                tracing::error!(model = %m, error = %message, "cannot load model");
                *st.load.lock().unwrap_or_else(|p| p.into_inner()) = LoadStatus::Failed {
                    model: m.clone(),
                    message,
                };
                return;
            }
        }
    }
    *st.load.lock().unwrap_or_else(|p| p.into_inner()) = LoadStatus::Ready;
    tracing::info!("all models loaded: ready");
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, ServeError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("serve-io")
        .enable_all()
        .build()?)
}

/// Serves until SIGINT or SIGTERM (or a model fails to load), then shuts down gracefully.
/// `on_bound` is called with the bound address (e.g. to print it).
pub fn serve_until_signal(
    addr: SocketAddr,
    zoo: Arc<Zoo>,
    config: ServeConfig,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let rt = runtime(config.io_threads)?;
    rt.block_on(async move {
        let server = Server::bind(addr, zoo, config).await?;
        on_bound(server.local_addr());
        let state = server.state.clone();
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
        let watcher = tokio::spawn({
            let state = state.clone();
            async move {
                loop {
                    match state.load_status() {
                        LoadStatus::Loading => tokio::time::sleep(Duration::from_millis(20)).await,
                        LoadStatus::Ready => return,
                        LoadStatus::Failed { .. } => {
                            let _ = failed_tx.send(());
                            return;
                        }
                    }
                }
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = shutdown_signal() => tracing::info!("signal received: shutting down"),
                Ok(()) = failed_rx => tracing::error!("a model failed to load: shutting down"),
            }
        };
        let result = server.run(shutdown).await;
        watcher.abort();
        if let LoadStatus::Failed { model, message } = state.load_status() {
            return Err(ServeError::Load { model, message });
        }
        result
    })
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// A server running on its own threads, for tests, benchmarks and applications that do not
/// run tokio themselves. [`ServerHandle::shutdown`] (or dropping it) stops it gracefully.
pub struct ServerHandle {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServeError>>>,
}

impl ServerHandle {
    /// Binds and starts serving in the background; returns once the address is bound (the
    /// models may still be loading: see [`ServerHandle::wait_ready`]).
    pub fn start(
        addr: SocketAddr,
        zoo: Arc<Zoo>,
        config: ServeConfig,
    ) -> Result<ServerHandle, ServeError> {
        let rt = runtime(config.io_threads)?;
        let server = rt.block_on(Server::bind(addr, zoo, config))?;
        let addr = server.local_addr();
        let state = server.state.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("serve".into())
            .spawn(move || {
                rt.block_on(server.run(async move {
                    let _ = stop_rx.await;
                }))
            })?;
        Ok(ServerHandle {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn load_status(&self) -> LoadStatus {
        self.state.load_status()
    }

    /// Blocks until every served model is loaded, a load fails, or `timeout` passes.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), ServeError> {
        let end = Instant::now() + timeout;
        loop {
            match self.state.load_status() {
                LoadStatus::Ready => return Ok(()),
                LoadStatus::Failed { model, message } => {
                    return Err(ServeError::Load { model, message })
                }
                LoadStatus::Loading if Instant::now() >= end => {
                    return Err(ServeError::NotReady(timeout))
                }
                LoadStatus::Loading => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Stops accepting connections, answers requests in flight, joins everything.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(ServeError::Panicked),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
