//! `livevote demo --embedded`: ingestion, processor and results in this one
//! process on the in-memory adapters, each behind its real HTTP router on a
//! free local port, with the local token issuer; then the same demo as
//! against the stack, over HTTP. NOT DURABLE: nothing survives the process.
//! No server is needed; `--hold` keeps it serving (the on-air and audit
//! pages work) until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use livevote_auth0::{JwksConfig, JwksVerifier};
use livevote_hosting::SystemClock;
use livevote_hosting::{ServeConfig, serve};
use livevote_ingestion::ratelimit::RateLimitConfig;
use livevote_memory::{
    DedupConfig, FakeHumanCheck, MemoryBus, MemoryDatabase, MemoryDedup, MemoryQueue, NoMetrics, QueueConfig,
};
use livevote_processor::runner::RunnerConfig;
use livevote_processor::{PersistConfig, PersistService};
use tokio::net::TcpListener;

use crate::api::Api;
use crate::demo::DemoArgs;

async fn listen() -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a local port")?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

pub async fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    println!(
        "livevote embedded mode: ingestion, processor and results in this process on the in-memory \
         adapters. NOT DURABLE: nothing is kept when it exits."
    );
    let clock = SystemClock;
    let db = MemoryDatabase::new(clock);
    let dedup = MemoryDedup::new(clock, DedupConfig::default());
    let queue = MemoryQueue::new(clock, QueueConfig::default());
    let bus = MemoryBus::default();

    // The local issuer's JWKS, verified like Auth0's.
    let (listener, issuer_addr) = listen().await?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, crate::issuer::router()).await {
            eprintln!("embedded issuer stopped: {error}");
        }
    });
    let tokens = JwksVerifier::new(JwksConfig::new(
        format!("http://{issuer_addr}/.well-known/jwks.json"),
        &args.api.issuer.issuer,
        &args.api.issuer.audience,
    ))
    .context("building the token verifier")?;

    // Ingestion, wired as in production.
    let ingestion = livevote_ingestion::wiring::wire(
        livevote_ingestion::wiring::Adapters {
            catalog: db.clone(),
            dedup: dedup.clone(),
            queue: queue.clone(),
            human: FakeHumanCheck::AlwaysHuman,
            clock,
            metrics: NoMetrics,
            changes: bus.clone(),
            reference: dedup.clone(),
            tokens: tokens.clone(),
            render_metrics: Arc::new(String::new),
            readiness: Vec::new(),
        },
        livevote_ingestion::wiring::Settings {
            // Every local viewer is 127.0.0.1: no per-address limit here.
            limits: RateLimitConfig {
                per_ip: None,
                ..RateLimitConfig::default()
            },
            ..Default::default()
        },
    )
    .await;
    let (listener, ingestion_addr) = listen().await?;
    tokio::spawn(serve(
        listener,
        ingestion.router,
        ServeConfig::default(),
        std::future::pending(),
    ));

    // Processor: the production runner over the in-memory queue and store.
    let persist = PersistService::new(
        queue.clone(),
        db.clone(),
        db.clone(),
        clock,
        NoMetrics,
        PersistConfig {
            receive_max: 10,
            receive_wait: Duration::from_millis(50),
        },
    );
    tokio::spawn(livevote_processor::runner::run(
        persist,
        RunnerConfig {
            receivers: 1,
            receive_wait: Duration::from_millis(50),
            ..RunnerConfig::default()
        },
        std::future::pending(),
    ));

    // Results, with election admin on the same bus ingestion listens to.
    let results = livevote_results::wiring::wire(
        livevote_results::wiring::Adapters {
            catalog: db.clone(),
            tallies: dedup.clone(),
            store: db.clone(),
            queue: queue.clone(),
            elections: db.clone(),
            announcer: bus.clone(),
            clock,
            metrics: NoMetrics,
            changes: bus,
            tokens,
            render_metrics: Arc::new(String::new),
            readiness: Vec::new(),
        },
        livevote_results::wiring::Settings::default(),
    );
    let (listener, results_addr) = listen().await?;
    tokio::spawn(serve(
        listener,
        results.router,
        ServeConfig::default(),
        std::future::pending(),
    ));
    println!("ingestion on http://{ingestion_addr}, results on http://{results_addr} (in this process)");

    let mut api_args = args.api.clone();
    api_args.results_url = format!("http://{results_addr}");
    api_args.ingestion_url = format!("http://{ingestion_addr}");
    let api = Api::new(&api_args)?;
    let outcome = crate::demo::show(args, &api).await?;
    if args.hold {
        println!("serving until Ctrl-C (results and pages at http://{results_addr})");
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    }
    Ok(outcome)
}
