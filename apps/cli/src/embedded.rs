//! `livevote demo --embedded`: ingestion, processor and results in this one
//! process on the in-memory adapters, each behind its real HTTP router on a
//! free local port, with the local token issuer; then the same demo as
//! against the stack, over HTTP. NOT DURABLE: nothing survives the process.
//! No server is needed; `--hold` keeps it serving (the on-air and audit
//! pages work) until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use livevote_auth0::{JwksConfig, JwksVerifier};
use livevote_hosting::SystemClock;
use livevote_hosting::{ServeConfig, serve};
use livevote_http::health::ReadinessCheck;
use livevote_ingestion::ratelimit::{RateLimitConfig, RateLimits};
use livevote_ingestion::{
    CacheConfig, CastConfig, CastVoteService, ElectionCache, PublisherConfig, VoteBatcher,
};
use livevote_memory::{
    DedupConfig, FakeHumanCheck, MemoryBus, MemoryDatabase, MemoryDedup, MemoryQueue, NoMetrics, QueueConfig,
};
use livevote_processor::{PersistConfig, PersistService};
use livevote_results::http::{AppState, Reads, StreamConfig};
use livevote_results::live::{LiveResults, Source};
use livevote_results::{AdminService, ResultsService};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

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
    let (_stop_tx, stop) = watch::channel(false);

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

    // Ingestion.
    let cache = Arc::new(ElectionCache::new(db.clone(), CacheConfig::default()));
    {
        let (cache, bus) = (cache.clone(), bus.clone());
        tokio::spawn(async move { cache.follow(&bus, std::future::pending()).await });
    }
    let (batcher, _publisher) = VoteBatcher::start(queue.clone(), PublisherConfig::default(), NoMetrics);
    let cast = CastVoteService::new(
        cache,
        dedup.clone(),
        batcher,
        FakeHumanCheck::AlwaysHuman,
        clock,
        NoMetrics,
        CastConfig::default(),
    );
    let ingestion = livevote_ingestion::http::AppState {
        voting: Arc::new(cast),
        tokens: Arc::new(tokens.clone()),
        // Every local viewer is 127.0.0.1: no per-address limit here.
        limits: Arc::new(RateLimits::new(RateLimitConfig {
            per_ip: None,
            ..RateLimitConfig::default()
        })),
        metrics: Arc::new(NoMetrics),
        render_metrics: Arc::new(String::new),
        readiness: Arc::new([]),
        draining: Arc::new(AtomicBool::new(false)),
        trusted_proxies: 0,
        request_timeout: Duration::from_secs(10),
    };
    let (listener, ingestion_addr) = listen().await?;
    tokio::spawn(serve(
        listener,
        livevote_ingestion::http::router(ingestion),
        ServeConfig::default(),
        std::future::pending(),
    ));

    // Processor: one loop draining the queue into the store.
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
    tokio::spawn(async move {
        loop {
            if let Err(error) = persist.run_once().await {
                eprintln!("embedded processor: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // Results, with election admin on the same bus ingestion listens to.
    let reads: Arc<dyn Reads> = Arc::new(ResultsService::new(
        db.clone(),
        dedup.clone(),
        db.clone(),
        queue.clone(),
        clock,
    ));
    let source: Source = {
        let reads = reads.clone();
        Arc::new(move |id| {
            let reads = reads.clone();
            Box::pin(async move { reads.results(id).await })
        })
    };
    let live = Arc::new(LiveResults::new(
        source,
        Duration::from_millis(250),
        Duration::from_millis(250),
    ));
    {
        let (live, bus) = (live.clone(), bus.clone());
        tokio::spawn(async move {
            livevote_redis::follow_changes(
                &bus,
                |change| match change {
                    livevote_ports::ElectionChange::Changed { election_id, .. } => {
                        live.invalidate(election_id)
                    }
                    livevote_ports::ElectionChange::Resync => live.invalidate_all(),
                },
                std::future::pending(),
            )
            .await;
        });
    }
    let results = AppState {
        reads,
        admin: Arc::new(AdminService::new(db.clone(), bus.clone(), clock)),
        tokens: Arc::new(tokens),
        live,
        streams: Arc::new(Semaphore::new(1000)),
        max_streams: 1000,
        stream: StreamConfig::default(),
        metrics: Arc::new(NoMetrics),
        render_metrics: Arc::new(String::new),
        readiness: Arc::new([]) as Arc<[Arc<dyn ReadinessCheck>]>,
        draining: Arc::new(AtomicBool::new(false)),
        stop,
        request_timeout: Duration::from_secs(10),
    };
    let (listener, results_addr) = listen().await?;
    tokio::spawn(serve(
        listener,
        livevote_results::http::router(results),
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
