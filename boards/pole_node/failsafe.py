"""The fail-safe: when the cabinet has not polled for `failsafe_timeout` seconds (and from
boot until its first request, and while it polls but has never written a level command since
boot), the node follows its own dusk/dawn by its lux sensor:
on at `default_level` once lux has stayed below `dusk_lux` for `lux_hold` seconds, off once
it has stayed above `dawn_lux` for `lux_hold` seconds (hysteresis in level and in time).
A lux sensor that does not answer means night: the lamp stays on, never off in the dark.
Pure: `now_ms` is a parameter.
"""


class FailSafe:
    def __init__(self, now_ms: int) -> None:
        self.last_poll_ms = now_ms
        self.polled = False  # no request since boot: fail-safe from the start
        self.commanded = False  # the cabinet has written the level command since boot
        self.dark: bool | None = None  # unknown until the first lux reading
        self.beyond_since: int | None = None  # when lux crossed the threshold that would flip `dark`

    def polled_at(self, now_ms: int) -> None:
        """The cabinet addressed this node (or broadcast) with a valid request."""
        self.last_poll_ms = now_ms
        self.polled = True

    def silent(self, now_ms: int, timeout_s: int) -> bool:
        return not self.polled or now_ms - self.last_poll_ms >= timeout_s * 1000

    def silent_for_s(self, now_ms: int) -> int:
        return max(0, now_ms - self.last_poll_ms) // 1000

    def see_lux(self, now_ms: int, lux: int | None, dusk: int, dawn: int, hold_s: int) -> None:
        """Track day and night from the node's own lux (None: the sensor failed)."""
        if lux is None:
            self.dark = True
            self.beyond_since = None
            return
        if self.dark is None:  # at boot: between the thresholds counts as night (never off in the dark)
            self.dark = lux < dawn
            return
        crossing = lux > dawn if self.dark else lux < dusk
        if not crossing:
            self.beyond_since = None
            return
        if self.beyond_since is None:
            self.beyond_since = now_ms
        if now_ms - self.beyond_since >= hold_s * 1000:
            self.dark = not self.dark
            self.beyond_since = None

    def level(self, now_ms: int, command: int, timeout_s: int, default_level: int) -> int:
        """The level to drive: the cabinet's command, or in fail-safe the node's own choice."""
        if self.commanded and not self.silent(now_ms, timeout_s):
            return command
        return default_level if self.dark is not False else 0
