"""The fleet simulator: many simulated cabinets against the city cloud (cabinet fleet sim)."""
