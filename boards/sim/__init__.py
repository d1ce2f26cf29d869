"""The simulated cabinet: real pymodbus servers behind pseudo-terminals (RTU lines) and
loopback TCP ports, serving register stores built from the device profiles, with line
timing and fault injection (store, line, tcp, faults, rtu_frames), a plant model and a
simulated GPS receiver. Import the submodules; this package imports nothing heavy."""
