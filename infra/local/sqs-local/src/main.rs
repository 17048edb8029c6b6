//! `livevote-sqs-local [ADDR]`: serves the SQS API (query and JSON
//! protocols) and the CloudWatch metrics API on ADDR (default
//! 127.0.0.1:4566) until interrupted. In memory; for development and tests.

use std::sync::Arc;

use awsim_cloudwatch_metrics::CloudWatchMetricsService;
use awsim_core::{AppState, ServiceHandler, gateway};
use awsim_sqs::SqsService;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:4566".to_owned());
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned());
    let mut state = AppState::new(region, "000000000000".to_owned());
    let sqs = Arc::new(SqsService::new());
    let sqs_routes = sqs.routes();
    state.register(sqs, sqs_routes);
    let metrics = Arc::new(CloudWatchMetricsService::new());
    let metrics_routes = metrics.routes();
    state.register(metrics, metrics_routes);
    let _ticks = gateway::spawn_tick_loop(state.clone(), std::time::Duration::from_millis(100));
    let app = axum::Router::new()
        .fallback(gateway::handle_request)
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("livevote-sqs-local: SQS and CloudWatch metrics on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
