"""The cloud ingest reference: verify, dedupe, store and acknowledge cabinet batches."""
