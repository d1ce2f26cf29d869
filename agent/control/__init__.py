"""The pure control layer: lighting/, climate/ and the alarm framework (alarms/) they share.

Everything here is a plain object driven by explicit arguments: a monotonic `now`,
a UTC datetime (or None when the clock is unknown) and a snapshot of the process
image in, decisions, events and alarm conditions out. No I/O, no asyncio, no wall
clock; the asyncio wrappers in agent/ read the image, write the outputs and persist
state. Imports point only to the pure model (agent.model) and astral.
"""
