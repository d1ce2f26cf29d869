"""`cabinet pole`: the pole node's firmware checks, its .mpy bundle and flashing with mpremote."""
