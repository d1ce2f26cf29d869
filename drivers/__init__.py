"""Talking to field devices: the Modbus bus engine and request planner, device
profiles (one file each), NMEA serial GPS and digital I/O. Knows devices, not the
runtime: nothing here imports agent/, boards/, ota/ or tools/."""
