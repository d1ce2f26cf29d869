"""cabinet scan: probe a bus for unit ids and recognize known device profiles."""
