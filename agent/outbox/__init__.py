"""The outbox: every reading durable in SQLite until the cloud acknowledged its batch.
writer.py is the asyncio front (Outbox) and front.py its write path (queue, commits),
store.py the SQLite side (with disk.py: the filesystem and the reserve file), sealing.py
seals and acknowledges, schema.py is the on-disk format, policy.py the pure decisions
(when to seal, what to evict, how much disk to use, what to drop)."""
