"""The uplink: sealed, signed batches from the outbox to the city cloud over MQTT v5,
and the agent's own telemetry that travels with them."""
