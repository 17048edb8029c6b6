# livevote in one AWS region: VPC across three AZs, the three services on
# ECS Fargate behind one ALB (WAF in front), SQS with a dead-letter queue,
# RDS PostgreSQL Multi-AZ, ElastiCache Redis in cluster mode, secrets in
# Secrets Manager and the CloudWatch alarms. Sizes: infra/CAPACITY.md.

locals {
  name = "livevote-${var.environment}"
  # Headroom of 30 % over the design peak, so the peak never runs at the limit.
  ingestion_max = ceil(var.peak_votes_per_second * 1.3 / var.ingestion_votes_per_task)
  processor_max = ceil(var.peak_votes_per_second * 1.3 / var.processor_votes_per_task)
  common_env = {
    LIVEVOTE_LOG                  = "info"
    LIVEVOTE_LOG_FORMAT           = "json"
    LIVEVOTE_QUEUE_NAME           = module.queue.queue_name
    LIVEVOTE_REDIS_URL            = "redis-cluster://${module.cache.configuration_endpoint}:6379"
    LIVEVOTE_JWKS_URL             = "https://${var.auth0_domain}/.well-known/jwks.json"
    LIVEVOTE_JWT_ISSUER           = "https://${var.auth0_domain}/"
    LIVEVOTE_JWT_AUDIENCE         = var.auth0_audience
    LIVEVOTE_CLOUDWATCH_NAMESPACE = "Livevote"
  }
}

module "network" {
  source = "./modules/network"
  name   = local.name
  cidr   = "10.40.0.0/16"
}

module "queue" {
  source            = "./modules/queue"
  name              = local.name
  alarm_topic_arn   = var.alarm_topic_arn
  max_receive_count = 5
}

module "database" {
  source             = "./modules/database"
  name               = local.name
  vpc_id             = module.network.vpc_id
  subnet_ids         = module.network.private_subnet_ids
  allowed_cidr       = module.network.cidr
  instance_class     = "db.r7g.8xlarge"
  allocated_storage  = 1000
  alarm_topic_arn    = var.alarm_topic_arn
  max_connections_ok = 800
}

module "cache" {
  source          = "./modules/cache"
  name            = local.name
  vpc_id          = module.network.vpc_id
  subnet_ids      = module.network.private_subnet_ids
  allowed_cidr    = module.network.cidr
  node_type       = "cache.r7g.xlarge"
  shards          = 12
  replicas        = 1
  alarm_topic_arn = var.alarm_topic_arn
}

resource "aws_secretsmanager_secret" "app" {
  name        = "${local.name}/app"
  description = "livevote service settings that are secrets (the Turnstile secret key)."
}

module "edge" {
  source            = "./modules/edge"
  name              = local.name
  vpc_id            = module.network.vpc_id
  public_subnet_ids = module.network.public_subnet_ids
  certificate_arn   = var.certificate_arn
  # Per client IP, per 5 minutes: one vote per election is all a viewer needs.
  vote_rate_limit    = 300
  results_rate_limit = 3000
}

resource "aws_ecs_cluster" "this" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

module "ingestion" {
  source             = "./modules/service"
  name               = "${local.name}-ingestion"
  cluster_id         = aws_ecs_cluster.this.id
  cluster_name       = aws_ecs_cluster.this.name
  image              = "${var.ecr_repository_url}/livevote-ingestion:${var.image_tag}"
  port               = 8080
  cpu                = 2048
  memory             = 4096
  subnet_ids         = module.network.private_subnet_ids
  vpc_id             = module.network.vpc_id
  allowed_cidr       = module.network.cidr
  target_group_arn   = module.edge.ingestion_target_group_arn
  alb_resource_label = module.edge.ingestion_resource_label
  min_tasks          = 6
  max_tasks          = local.ingestion_max
  # Scale on requests per task, well before CPU saturates (p99 rises first).
  requests_per_task_target = floor(var.ingestion_votes_per_task * 60 * 0.7)
  environment = merge(local.common_env, {
    LIVEVOTE_INGESTION_LISTEN = "0.0.0.0:8080"
  })
  secrets = {
    LIVEVOTE_DATABASE_URL     = "${module.database.url_secret_arn}:url::"
    LIVEVOTE_TURNSTILE_SECRET = "${aws_secretsmanager_secret.app.arn}:turnstile_secret::"
  }
  sqs_queue_arns = [module.queue.queue_arn]
}

module "processor" {
  source       = "./modules/service"
  name         = "${local.name}-processor"
  cluster_id   = aws_ecs_cluster.this.id
  cluster_name = aws_ecs_cluster.this.name
  image        = "${var.ecr_repository_url}/livevote-processor:${var.image_tag}"
  port         = 8081
  cpu          = 2048
  memory       = 4096
  subnet_ids   = module.network.private_subnet_ids
  vpc_id       = module.network.vpc_id
  allowed_cidr = module.network.cidr
  min_tasks    = 3
  max_tasks    = local.processor_max
  # Scale on the age of the oldest queued vote instead of requests.
  queue_age_target_seconds = 5
  queue_name               = module.queue.queue_name
  environment = merge(local.common_env, {
    LIVEVOTE_PROCESSOR_LISTEN = "0.0.0.0:8081"
  })
  secrets = {
    LIVEVOTE_DATABASE_URL = "${module.database.url_secret_arn}:url::"
  }
  sqs_queue_arns = [module.queue.queue_arn, module.queue.dlq_arn]
}

module "results" {
  source                   = "./modules/service"
  name                     = "${local.name}-results"
  cluster_id               = aws_ecs_cluster.this.id
  cluster_name             = aws_ecs_cluster.this.name
  image                    = "${var.ecr_repository_url}/livevote-results:${var.image_tag}"
  port                     = 8082
  cpu                      = 1024
  memory                   = 2048
  subnet_ids               = module.network.private_subnet_ids
  vpc_id                   = module.network.vpc_id
  allowed_cidr             = module.network.cidr
  target_group_arn         = module.edge.results_target_group_arn
  alb_resource_label       = module.edge.results_resource_label
  min_tasks                = 3
  max_tasks                = 30
  requests_per_task_target = 60000
  environment = merge(local.common_env, {
    LIVEVOTE_RESULTS_LISTEN         = "0.0.0.0:8082"
    LIVEVOTE_RESULTS_RECONCILE_SECS = "15"
  })
  secrets = {
    LIVEVOTE_DATABASE_URL = "${module.database.url_secret_arn}:url::"
  }
  sqs_queue_arns = [module.queue.queue_arn, module.queue.dlq_arn]
}

module "alarms" {
  source                  = "./modules/alarms"
  name                    = local.name
  alarm_topic_arn         = var.alarm_topic_arn
  namespace               = "Livevote"
  alb_arn_suffix          = module.edge.alb_arn_suffix
  ingestion_target_suffix = module.edge.ingestion_target_group_arn_suffix
}
