"""A real MicroPython (WebAssembly, under Node.js) for the pole node\x27s test vectors."""
