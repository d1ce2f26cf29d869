"""`cabinet console`: the web console's users (docs/console.md)."""
