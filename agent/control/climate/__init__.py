"""The cabinet climate controller (controller.py) and its parts: settings, fans and their
failure check, the anti-condensation heater, door/flood/UPS contacts, building blocks and
alarms. Pure: inputs in, decisions out."""
