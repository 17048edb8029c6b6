//! Building a client and creating queues (local runs and tests; production
//! queues come from terraform).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::SqsConfig;

/// An SQS client from the standard AWS environment (region, credentials,
/// profile), pointed at `endpoint` when given (a local SQS-compatible server).
pub async fn client(endpoint: Option<&str>) -> Client {
    let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let mut builder = aws_sdk_sqs::config::Builder::from(&shared);
    if let Some(url) = endpoint {
        builder = builder.endpoint_url(url);
    }
    Client::from_conf(builder.build())
}

/// A client for a local SQS-compatible server at `endpoint`, with the
/// static credentials `test`/`test` and region `us-east-1` that local
/// servers accept (never for AWS).
pub fn local_client(endpoint: &str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "livevote-local",
        ))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// Attributes of the queues [`create_queues`] makes.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub visibility_timeout: Duration,
    /// Deliveries before a message moves to the dead-letter queue.
    pub max_receive_count: u32,
    pub retention: Duration,
    /// Longer than the main queue's: SQS keeps the original enqueue time on the move.
    pub dead_letter_retention: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
            retention: Duration::from_secs(4 * 24 * 3600),
            dead_letter_retention: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// Creates `<name>-dlq` and `<name>` with a redrive policy to it (idempotent
/// when the attributes match) and returns the adapter config for them.
///
/// # Errors
/// When a queue cannot be created or its ARN read.
pub async fn create_queues(
    client: &Client,
    name: &str,
    settings: QueueSettings,
) -> anyhow::Result<SqsConfig> {
    use anyhow::Context;
    let dlq_name = format!("{name}-dlq");
    let dlq_url = client
        .create_queue()
        .queue_name(&dlq_name)
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            settings.dead_letter_retention.as_secs().to_string(),
        )
        .send()
        .await
        .with_context(|| format!("creating queue {dlq_name}"))?
        .queue_url
        .with_context(|| format!("queue {dlq_name} has no URL"))?;
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("reading the ARN of {dlq_name}"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .with_context(|| format!("queue {dlq_name} has no ARN"))?;
    let redrive = format!(
        r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{}"}}"#,
        settings.max_receive_count
    );
    let url = client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            settings.visibility_timeout.as_secs().to_string(),
        )
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            settings.retention.as_secs().to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .with_context(|| format!("queue {name} has no URL"))?;
    Ok(SqsConfig::new(url, dlq_url))
}

/// The adapter config for the existing queue `name` and its dead-letter
/// queue `<name>-dlq` (as terraform or [`create_queues`] made them).
///
/// # Errors
/// When either queue does not exist or the server cannot be reached.
pub async fn find_queues(client: &Client, name: &str) -> anyhow::Result<SqsConfig> {
    use anyhow::Context;
    let url_of = |queue: String| async move {
        client
            .get_queue_url()
            .queue_name(&queue)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)))
            .with_context(|| format!("looking up queue {queue}"))?
            .queue_url
            .with_context(|| format!("queue {queue} has no URL"))
    };
    let url = url_of(name.to_owned()).await?;
    let dlq = url_of(format!("{name}-dlq")).await?;
    Ok(SqsConfig::new(url, dlq))
}

/// The vote queue `name` (and `<name>-dlq`) at `endpoint` (or AWS, from the
/// standard AWS environment), ready to use.
///
/// # Errors
/// When the queues do not exist or the server cannot be reached; the
/// message names the queue and the endpoint.
pub async fn open_queue(endpoint: Option<&str>, name: &str) -> anyhow::Result<crate::SqsQueue> {
    use anyhow::Context;
    let sqs = client(endpoint).await;
    let queues = find_queues(&sqs, name)
        .await
        .with_context(|| format!("queue {name} at {}", endpoint.unwrap_or("AWS")))?;
    Ok(crate::SqsQueue::new(sqs, queues))
}
