"""Remote management: signed commands from the downlink to their handlers, remote
configuration with its health gate, the OTA service, and the health checks they share."""
