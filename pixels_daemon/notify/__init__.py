"""Notifications: config, routing policy, the durable outbox, the sinks and the delivery loop."""
