"""Programs for the other users: the `cabinet` command table (cli/), the technician's
status, doctor and scan, provisioning and PKI, the cloud ingest, the operators' signed
commands and OTA tools, benchmarks. Nothing in the runtime imports from here."""
