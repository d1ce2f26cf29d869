"""Programs for the other users: the technician's status and scan, benchmarks, and
(later) provisioning, cloud ingest reference, OTA publishing, the HIL rig runner."""
