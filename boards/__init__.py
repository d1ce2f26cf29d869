"""Hardware profiles and the simulated board."""
