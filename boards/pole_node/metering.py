"""Lamp metering from sampled waveforms: RMS voltage and current, active power and power
factor from simultaneous samples (ADC counts around a mid-scale offset). Pure."""

import math


def measure(
    v_samples: list[int], i_samples: list[int], offset: int, v_per_count: float, a_per_count: float
) -> tuple[float, float, float, float]:
    """(V rms, A rms, W active, power factor) of one sampled window."""
    n = min(len(v_samples), len(i_samples))
    if n == 0:
        return 0.0, 0.0, 0.0, 0.0
    sv = si = sp = 0.0
    for k in range(n):
        v = (v_samples[k] - offset) * v_per_count
        a = (i_samples[k] - offset) * a_per_count
        sv += v * v
        si += a * a
        sp += v * a
    vrms = math.sqrt(sv / n)
    irms = math.sqrt(si / n)
    power = sp / n
    apparent = vrms * irms
    pf = abs(power) / apparent if apparent > 1e-6 else 0.0
    return vrms, irms, abs(power), min(pf, 1.0)
