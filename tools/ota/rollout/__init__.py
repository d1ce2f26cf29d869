"""Staged OTA rollouts: the pure plan (plan.py), the MQTT session that walks it (session.py)
and its inputs (inputs.py): the fleet, keys, options and saved state."""
