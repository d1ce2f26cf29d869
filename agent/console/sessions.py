"""Console sessions and the login lockout. Pure: every call is given `now` (monotonic seconds).

A session is a random 256-bit token (the HttpOnly cookie) with its user, role, CSRF token,
and two expiries: idle (no request and no open page for `idle_s`) and absolute (`max_s`
after the login). The lockout counts failed logins per user name and per client address:
`failures` of them within `window_s` lock that key for `window_s`; a locked key is refused
before any password is checked, and a good login clears its user name's count."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

MAX_SESSIONS = 256


@dataclass
class Session:
    token: str
    user: str
    role: str
    hash: str  # the user's password hash at login: a new password ends the session
    csrf: str
    created: float
    seen: float


class Sessions:
    def __init__(self, idle_s: float, max_s: float) -> None:
        self.idle_s, self.max_s = idle_s, max_s
        self._by_token: dict[str, Session] = {}

    def create(self, user: str, role: str, hashed: str, now: float) -> Session:
        self.expire(now)
        if len(self._by_token) >= MAX_SESSIONS:  # the oldest goes: a flood of logins cannot fill memory
            oldest = min(self._by_token.values(), key=lambda s: s.seen)
            del self._by_token[oldest.token]
        s = Session(secrets.token_urlsafe(32), user, role, hashed, secrets.token_urlsafe(32), now, now)
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None, now: float, touch: bool = True) -> Session | None:
        """The live session of `token` (its idle time restarted when `touch`), or None."""
        s = self._by_token.get(token or "")
        if s is None:
            return None
        if now - s.seen > self.idle_s or now - s.created > self.max_s:
            del self._by_token[s.token]
            return None
        if touch:
            s.seen = now
        return s

    def drop(self, token: str | None) -> None:
        self._by_token.pop(token or "", None)

    def expire(self, now: float) -> None:
        for s in list(self._by_token.values()):
            self.get(s.token, now, touch=False)

    def __len__(self) -> int:
        return len(self._by_token)


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())


@dataclass
class _Count:
    times: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class Lockout:
    def __init__(self, failures: int, window_s: float) -> None:
        self.failures, self.window_s = failures, window_s
        self._keys: dict[str, _Count] = {}

    def locked_for(self, keys: list[str], now: float) -> float:
        """Seconds the longest lock among `keys` still runs (0: not locked)."""
        return max((max(0.0, c.locked_until - now) for k in keys if (c := self._keys.get(k))), default=0.0)

    def failed(self, keys: list[str], now: float) -> bool:
        """Count a failure for each key; True when one of them is locked now."""
        locked = False
        for k in keys:
            c = self._keys.setdefault(k, _Count())
            c.times = [t for t in c.times if now - t < self.window_s] + [now]
            if len(c.times) >= self.failures:
                c.locked_until, c.times = now + self.window_s, []
                locked = True
        if len(self._keys) > 4096:  # forget the quiet ones
            self._keys = {k: c for k, c in self._keys.items() if c.locked_until > now or c.times}
        return locked

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)
