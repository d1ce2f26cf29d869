"""The lighting controller (controller.py) and its parts: the astronomical clock, calendars,
control programs, the photocell, overrides, actuation of a segment, failure monitoring and
accounting, its alarms and its view of time. Pure: inputs in, decisions out."""
