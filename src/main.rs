//! `triage`: the command-line face of Triage. It parses arguments, calls the libraries and
//! prints; the work lives in the `triage-*` crates.

mod cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Decide, for every input, how much deep-learning effort it deserves.
#[derive(Parser)]
#[command(name = "triage", version, about)]
struct Cli {
    /// Directory holding the shared zoo, datasets and network traces.
    #[arg(
        long,
        global = true,
        env = "TRIAGE_SHARED",
        default_value = "../shared"
    )]
    shared: PathBuf,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and check the model zoo.
    #[command(subcommand)]
    Zoo(cmd::zoo::ZooCommand),
    /// Derive datasets: ImageNet-C-style corrupted copies.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Measure every variant and remote option on every image of a dataset; `merge` shards;
    /// `show` a summary.
    Profile(cmd::profile::ProfileCommand),
    /// Compile profiles into a schedule plan for a device and targets.
    Compile(cmd::compile::CompileArgs),
    /// Inspect a plan.
    #[command(subcommand)]
    Plan(cmd::compile::PlanCommand),
    /// Replay Triage and the published baselines on a profile (or run the plan live on the
    /// images); report accuracy, latency, energy and cost with confidence intervals.
    Eval(cmd::eval::EvalArgs),
    /// Profile, compile, evaluate (cross-validated) and report on the shared data, reusing
    /// what has not changed.
    Pipeline(cmd::pipeline::PipelineArgs),
    /// Cross-validate premodel learners on a profile.
    #[command(subcommand)]
    Premodel(cmd::premodel::PremodelCommand),
    /// Classify images with the embedded runtime executing a plan (budgets, offloading).
    Run(Box<cmd::run::RunArgs>),
    /// Time every variant on every backend side by side: load, latency, throughput.
    Bench(cmd::bench::BenchArgs),
    /// Serve zoo variants over the Open Inference Protocol v2 (KServe/Triton) REST API.
    Serve(cmd::serve::ServeArgs),
    /// Proxy TCP through an emulated cellular link replaying a mahimahi trace.
    Netem(cmd::netem::NetemArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cmd::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Zoo(c) => cmd::zoo::run(c, &cli.shared),
        Command::Data(c) => cmd::data::run(c, &cli.shared),
        Command::Profile(c) => cmd::profile::run(c, &cli.shared),
        Command::Premodel(c) => cmd::premodel::run(c),
        Command::Compile(c) => cmd::compile::run_compile(c),
        Command::Plan(c) => cmd::compile::run_plan(c),
        Command::Run(c) => cmd::run::run(*c, &cli.shared),
        Command::Bench(c) => cmd::bench::run(c, &cli.shared),
        Command::Eval(c) => cmd::eval::run(c, &cli.shared),
        Command::Pipeline(c) => cmd::pipeline::run(c, &cli.shared),
        Command::Serve(c) => cmd::serve::run(c, &cli.shared),
        Command::Netem(c) => cmd::netem::run(c, &cli.shared),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
