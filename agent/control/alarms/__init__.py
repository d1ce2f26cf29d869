"""The alarm framework: value types (model.py) and the manager that raises, debounces,
latches, acknowledges and persists alarms for every part of the agent (manager.py)."""
