"""The ingest's PostgreSQL schema: versioned migrations, daily partitions of readings, bulk materialization."""
