"""The wire formats shared with the cloud, pure (no I/O, no clock): the telemetry batch
body, the COSE_Sign1 envelope and acks, signed commands and replies, the OTA status report."""
