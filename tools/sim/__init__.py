"""Tools around the simulated cabinet: `cabinet sim-control` (control.py) sends the
simulator's control messages (faults, plant inputs, reads) from a shell."""
