# PostgreSQL, Multi-AZ (synchronous standby in another AZ: a commit the
# processor saw is on two AZs before the queue message is deleted). The
# connection URL the services read lives in Secrets Manager.

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

variable "instance_class" {
  type = string
}

variable "allocated_storage" {
  type = number
}

variable "alarm_topic_arn" {
  type = string
}

variable "max_connections_ok" {
  description = "Connections above which the alarm fires (pools: processor tasks x LIVEVOTE_DATABASE_POOL + results)."
  type        = number
}

resource "random_password" "master" {
  length  = 40
  special = false
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_security_group" "db" {
  name   = "${var.name}-postgres"
  vpc_id = var.vpc_id
  ingress {
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = [var.allowed_cidr]
  }
}

resource "aws_db_parameter_group" "this" {
  name   = "${var.name}-pg16"
  family = "postgres16"
  # Durability is not negotiable: a commit is on disk (and on the standby) before it returns.
  parameter {
    name  = "synchronous_commit"
    value = "on"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }
}

resource "aws_db_instance" "this" {
  identifier                   = var.name
  engine                       = "postgres"
  engine_version               = "16.4"
  instance_class               = var.instance_class
  allocated_storage            = var.allocated_storage
  storage_type                 = "io2"
  iops                         = 40000
  storage_encrypted            = true
  multi_az                     = true
  db_name                      = "livevote"
  username                     = "livevote"
  password                     = random_password.master.result
  db_subnet_group_name         = aws_db_subnet_group.this.name
  vpc_security_group_ids       = [aws_security_group.db.id]
  parameter_group_name         = aws_db_parameter_group.this.name
  backup_retention_period      = 14
  deletion_protection          = true
  performance_insights_enabled = true
  skip_final_snapshot          = false
  final_snapshot_identifier    = "${var.name}-final"
  apply_immediately            = false
}

resource "aws_secretsmanager_secret" "url" {
  name        = "${var.name}/database"
  description = "LIVEVOTE_DATABASE_URL of the services (key: url)."
}

resource "aws_secretsmanager_secret_version" "url" {
  secret_id = aws_secretsmanager_secret.url.id
  secret_string = jsonencode({
    url = "postgres://livevote:${random_password.master.result}@${aws_db_instance.this.address}:5432/livevote?sslmode=require"
  })
}

resource "aws_cloudwatch_metric_alarm" "cpu" {
  alarm_name          = "${var.name}-postgres-cpu"
  alarm_description   = "PostgreSQL CPU above 80 % for 5 minutes: persisting falls behind (queue age rises next)."
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.this.identifier }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 5
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [var.alarm_topic_arn]
}

resource "aws_cloudwatch_metric_alarm" "connections" {
  alarm_name          = "${var.name}-postgres-connections"
  namespace           = "AWS/RDS"
  metric_name         = "DatabaseConnections"
  dimensions          = { DBInstanceIdentifier = aws_db_instance.this.identifier }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.max_connections_ok
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [var.alarm_topic_arn]
}

output "url_secret_arn" {
  value = aws_secretsmanager_secret.url.arn
}

output "address" {
  value = aws_db_instance.this.address
}
