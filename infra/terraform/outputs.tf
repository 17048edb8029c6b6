output "public_url" {
  description = "The ALB's DNS name (point the vote and results hostnames at it)."
  value       = module.edge.dns_name
}

output "queue_url" {
  description = "The vote queue."
  value       = module.queue.queue_url
}

output "autoscaling_limits" {
  description = "Task limits derived from the design peak (infra/CAPACITY.md)."
  value = {
    ingestion_max = local.ingestion_max
    processor_max = local.processor_max
  }
}
