//! A stream of images under an energy budget and a cloud budget, offloading over an emulated
//! LTE uplink to a local v2 server, printing how the operating point moves as the budgets
//! are spent.
//!
//! `cargo run --release --example budgeted_stream -- [PLAN] [N_IMAGES]`
//! (default `out/plan.triage` and 40 images at 4 per second; `TRIAGE_SHARED` as for the CLI). The server runs
//! in-process on loopback and is reached through a trace-driven link replaying
//! `network-traces/TMobile-LTE-short.up` with 40 ms of extra RTT.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use triage_runtime::budget::BudgetConfig;
use triage_runtime::link::{LinkConfig, LinkEmulator, Trace};
use triage_runtime::server::{ServeConfig, ServerHandle};
use triage_runtime::{NetworkView, Runtime, RuntimeConfig};
use triage_zoo::{Dataset, DatasetOptions, Zoo};

fn main() -> anyhow::Result<()> {
    let shared = std::env::var_os("TRIAGE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared"));
    let mut args = std::env::args().skip(1);
    let plan_path = PathBuf::from(args.next().unwrap_or_else(|| "out/plan.triage".into()));
    let n: usize = args.next().map_or(Ok(40), |s| s.parse())?;
    let zoo_dir = shared.join("zoo");

    let plan = triage_compiler::plan::Plan::load(&plan_path).with_context(|| {
        format!(
            "loading {} (write one with `triage profile && triage compile`)",
            plan_path.display()
        )
    })?;
    let mut servers: Vec<String> = plan.remote.iter().flat_map(|r| r.servers.clone()).collect();
    servers.sort();
    servers.dedup();
    if servers.is_empty() {
        bail!("the plan has no remote options: profile with a remote grid to offload");
    }

    // The server side, on loopback, behind an emulated LTE uplink.
    let zoo = Arc::new(Zoo::open(&zoo_dir)?);
    let server = ServerHandle::start("127.0.0.1:0".parse()?, zoo, ServeConfig::new(servers))?;
    server.wait_ready(Duration::from_secs(120))?;
    let trace = Trace::load(&shared.join("network-traces/TMobile-LTE-short.up"))?;
    let link = LinkEmulator::start(
        "127.0.0.1:0",
        server.addr(),
        LinkConfig::new(trace.clone(), trace.clone(), Duration::from_millis(40)),
    )?;

    // A camera at 4 frames per second with a small energy budget and a small cloud budget
    // over a horizon as long as the stream, so that it spends them: the runtime paces,
    // moves along the ladder, and falls back to the cheapest variant when a budget is gone.
    let period = Duration::from_millis(250);
    let horizon = period * n as u32;
    let up_mbps = trace.capacity_bps(0.0, trace.period_ms() as f64) / 1e6;
    let config = RuntimeConfig {
        server: Some(format!("http://{}", link.local_addr())),
        budget: BudgetConfig {
            energy_mj: Some(150.0 * n as f64),
            usd: Some(2e-6),
            horizon,
            ..BudgetConfig::default()
        },
        request_interval: Some(period),
        // Until the first upload measures it, assume the trace's mean capacity.
        assumed_network: Some(NetworkView {
            up_mbps,
            rtt_ms: 40.0,
        }),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::with_plan(plan, &plan_path, &zoo_dir, config)?;
    let data = Dataset::open(
        shared.join("datasets/imagenet-sample"),
        &DatasetOptions::default(),
    )?;
    let stream = runtime.stream("camera", 1.0);
    let mut right = 0;
    let mut last_point = String::new();
    println!(
        "{:>4} {:<14} {:>6} {:>9} {:>10} {:>12}  ran",
        "img", "point", "right", "ms", "energy J", "cloud $"
    );
    let start = Instant::now();
    for (i, s) in data.samples().iter().step_by(7).take(n).enumerate() {
        // The next frame arrives on the camera's clock.
        std::thread::sleep((start + period * i as u32).saturating_duration_since(Instant::now()));
        runtime.probe_if_stale();
        let bytes = std::fs::read(&s.path)?;
        let out = stream.classify_bytes(&bytes, &s.path, None)?;
        right += usize::from(out.class == s.label);
        let st = runtime.status();
        let moved = if out.point != last_point { "*" } else { " " };
        last_point.clone_from(&out.point);
        println!(
            "{i:>4}{moved}{:<14} {:>6} {:>9.1} {:>10.3} {:>12.8}  {}{}",
            out.point,
            out.class == s.label,
            out.latency_ms,
            st.spent.energy_mj / 1e3,
            st.spent.usd,
            out.variants_run.join(">"),
            if out.answered_remotely {
                format!(
                    " + remote {}",
                    out.remote.map(|r| r.option).unwrap_or_default()
                )
            } else {
                String::new()
            }
        );
    }
    let st = runtime.status();
    println!(
        "top-1 {right}/{n}; spent {:.3} of {:.3} J above the floor and ${:.8} of ${:.8}; network estimate {:?}",
        st.spent.energy_mj / 1e3,
        st.limits.energy_mj / 1e3,
        st.spent.usd,
        st.limits.usd,
        st.network
    );
    link.stop();
    server.shutdown()?;
    Ok(())
}
