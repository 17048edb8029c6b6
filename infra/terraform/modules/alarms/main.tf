# Service-level CloudWatch alarms. The integrity alarm compares the votes the
# ingestion tasks answered 202 for with the votes the processor stored
# (metrics `votes.accepted` and `votes.persisted` the services publish to
# the namespace): if more were accepted than persisted in every one of five
# consecutive minutes, votes are piling up or getting lost.

variable "name" {
  type = string
}

variable "alarm_topic_arn" {
  type = string
}

variable "namespace" {
  type = string
}

variable "alb_arn_suffix" {
  type = string
}

variable "ingestion_target_suffix" {
  type = string
}

resource "aws_cloudwatch_metric_alarm" "accepted_not_persisted" {
  alarm_name          = "${var.name}-votes-accepted-minus-persisted"
  alarm_description   = "votes.accepted - votes.persisted > 0 for 5 minutes: run `livevote reconcile` and check the DLQ."
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]

  metric_query {
    id          = "drift"
    expression  = "FILL(accepted, 0) - FILL(persisted, 0)"
    label       = "accepted minus persisted"
    return_data = true
  }
  metric_query {
    id = "accepted"
    metric {
      namespace   = var.namespace
      metric_name = "votes.accepted"
      period      = 60
      stat        = "Sum"
    }
  }
  metric_query {
    id = "persisted"
    metric {
      namespace   = var.namespace
      metric_name = "votes.persisted"
      period      = 60
      stat        = "Sum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "ingestion_5xx" {
  alarm_name          = "${var.name}-ingestion-5xx"
  alarm_description   = "More than 1 % of vote requests answered 5xx (503 = load shedding or a dependency down)."
  evaluation_periods  = 3
  threshold           = 1
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]

  metric_query {
    id          = "ratio"
    expression  = "100 * FILL(errors, 0) / MAX([requests, 1])"
    label       = "5xx percent"
    return_data = true
  }
  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions = {
        LoadBalancer = var.alb_arn_suffix
        TargetGroup  = var.ingestion_target_suffix
      }
      period = 60
      stat   = "Sum"
    }
  }
  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions = {
        LoadBalancer = var.alb_arn_suffix
        TargetGroup  = var.ingestion_target_suffix
      }
      period = 60
      stat   = "Sum"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "ingestion_latency" {
  alarm_name          = "${var.name}-ingestion-p99"
  alarm_description   = "Vote p99 above 25 ms at the load balancer for 5 minutes."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "TargetResponseTime"
  extended_statistic  = "p99"
  dimensions          = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.ingestion_target_suffix }
  period              = 60
  evaluation_periods  = 5
  threshold           = 0.025
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
}
