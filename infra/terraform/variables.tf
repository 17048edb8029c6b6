variable "region" {
  description = "AWS region of this deployment (the writer region, see infra/CAPACITY.md)."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Name of the environment (prod, staging, ...); prefixes every resource."
  type        = string
  default     = "prod"
}

variable "image_tag" {
  description = "Tag of the livevote-ingestion, livevote-processor and livevote-results images in ECR."
  type        = string
}

variable "ecr_repository_url" {
  description = "ECR repository prefix, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/livevote."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate of the public HTTPS listener."
  type        = string
}

variable "auth0_domain" {
  description = "Auth0 tenant domain; the services fetch https://<domain>/.well-known/jwks.json."
  type        = string
}

variable "auth0_audience" {
  description = "API audience the viewers' tokens are issued for."
  type        = string
}

variable "peak_votes_per_second" {
  description = "Design peak; sizes the autoscaling limits (infra/CAPACITY.md)."
  type        = number
  default     = 250000
}

variable "ingestion_votes_per_task" {
  description = "Votes/s one ingestion task (2 vCPU) sustains at 70 % CPU, from the load runs (infra/CAPACITY.md)."
  type        = number
  default     = 9000
}

variable "processor_votes_per_task" {
  description = "Votes/s one processor task (2 vCPU) persists at 70 % CPU (infra/CAPACITY.md)."
  type        = number
  default     = 30000
}

variable "alarm_topic_arn" {
  description = "SNS topic the CloudWatch alarms notify (on-call paging)."
  type        = string
}
