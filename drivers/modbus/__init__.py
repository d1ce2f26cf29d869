"""Modbus RTU/TCP: register codec, request planner (pure) and the bus engine."""
