# The vote queue and its dead-letter queue. Standard queue (at-least-once;
# the processor's unique constraint makes redelivery harmless), long polling,
# 4 days of retention on the queue and the maximum 14 on the DLQ so a
# weekend is enough to inspect and replay.

variable "name" {
  type = string
}

variable "alarm_topic_arn" {
  type = string
}

variable "max_receive_count" {
  description = "Deliveries before a message moves to the DLQ."
  type        = number
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.name}-votes-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "votes" {
  name                       = "${var.name}-votes"
  message_retention_seconds  = 345600
  visibility_timeout_seconds = 60
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.votes.arn]
  })
}

resource "aws_cloudwatch_metric_alarm" "oldest_message" {
  alarm_name          = "${var.name}-votes-oldest-message-age"
  alarm_description   = "A vote has waited more than 30 s in the queue: the processor is behind or down."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.votes.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 30
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${var.name}-votes-dlq-not-empty"
  alarm_description   = "Votes reached the dead-letter queue: inspect with `livevote dlq list`, replay with `livevote dlq replay`."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
}

output "queue_name" {
  value = aws_sqs_queue.votes.name
}

output "queue_url" {
  value = aws_sqs_queue.votes.id
}

output "queue_arn" {
  value = aws_sqs_queue.votes.arn
}

output "dlq_arn" {
  value = aws_sqs_queue.dlq.arn
}
