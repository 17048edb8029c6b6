# Redis in cluster mode: the vote claims and live tallies, spread over
# shards by the `{e:<election>:<shard>}` hash tags. `noeviction`: Redis must
# refuse writes when full (ingestion then answers 503) rather than silently
# drop a claim, which would let a viewer vote twice past the fast path.

variable "name" {
  type = string
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  type = list(string)
}

variable "allowed_cidr" {
  type = string
}

variable "node_type" {
  type = string
}

variable "shards" {
  description = "Primaries (node groups); see infra/CAPACITY.md."
  type        = number
}

variable "replicas" {
  description = "Replicas per shard, in other AZs (automatic failover)."
  type        = number
}

variable "alarm_topic_arn" {
  type = string
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_security_group" "redis" {
  name   = "${var.name}-redis"
  vpc_id = var.vpc_id
  ingress {
    from_port   = 6379
    to_port     = 6379
    protocol    = "tcp"
    cidr_blocks = [var.allowed_cidr]
  }
}

resource "aws_elasticache_parameter_group" "this" {
  name   = "${var.name}-redis7-cluster"
  family = "redis7"
  parameter {
    name  = "cluster-enabled"
    value = "yes"
  }
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = "livevote claims and live tallies"
  engine                     = "redis"
  engine_version             = "7.1"
  node_type                  = var.node_type
  parameter_group_name       = aws_elasticache_parameter_group.this.name
  num_node_groups            = var.shards
  replicas_per_node_group    = var.replicas
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.redis.id]
  at_rest_encryption_enabled = true
  transit_encryption_enabled = false
  snapshot_retention_limit   = 1
}

resource "aws_cloudwatch_metric_alarm" "memory" {
  alarm_name          = "${var.name}-redis-memory"
  alarm_description   = "Redis above 75 % of its memory; with noeviction it refuses writes when full (votes get 503)."
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { ReplicationGroupId = aws_elasticache_replication_group.this.id }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 75
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [var.alarm_topic_arn]
}

resource "aws_cloudwatch_metric_alarm" "engine_cpu" {
  alarm_name          = "${var.name}-redis-engine-cpu"
  alarm_description   = "A Redis shard's engine thread above 70 %: add shards (infra/CAPACITY.md)."
  namespace           = "AWS/ElastiCache"
  metric_name         = "EngineCPUUtilization"
  dimensions          = { ReplicationGroupId = aws_elasticache_replication_group.this.id }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 70
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [var.alarm_topic_arn]
}

output "configuration_endpoint" {
  value = aws_elasticache_replication_group.this.configuration_endpoint_address
}
