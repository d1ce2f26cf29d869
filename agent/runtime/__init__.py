"""The running agent: its entry (python -m agent), the app that wires every part, the
control loop task, the local status API, the data dir and its lock, state files, keys,
the service watchdog."""
