"""The outbox: every reading durable in SQLite until the cloud acknowledged its batch.
writer.py is the asyncio front (Outbox), store.py the SQLite side, schema.py the on-disk
format, policy.py the pure decisions (when to seal, what to evict)."""
