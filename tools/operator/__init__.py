"""The operator side of signed commands: operator keys, cabinet cmd send, cabinet config push."""
