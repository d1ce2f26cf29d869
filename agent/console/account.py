"""A console user sets their own password (POST /api/password, {"password", "current"}).

A user who logged in with a one-time code (`cabinet provision --console-user`) must do this
before anything else and gives no "current" (the code was just checked at the login); everyone
else gives their current password. The new password follows the same rules as `cabinet console
passwd`; it is hashed off the event loop, one scrypt at a time, and the users file is written
atomically: the code, or the old password, stops working at once."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.console.http import HttpError
from agent.console.users import User, Users, check_password, hash_password, read_users, verify_password, write_users


async def change_password(users: Users, kdf: asyncio.Semaphore, user: User, doc: dict[str, Any]) -> User:
    """The user with the new hash, written to the users file; HttpError 400/401/409 otherwise."""
    new, current = doc.get("password"), doc.get("current")
    if not isinstance(new, str):
        raise HttpError(400, 'give the new password as "password"')
    if problem := check_password(new):
        raise HttpError(400, problem)
    loop = asyncio.get_running_loop()
    async with kdf:
        if not user.one_time:
            if not isinstance(current, str):
                raise HttpError(400, 'give your current password as "current"')
            if not await loop.run_in_executor(None, verify_password, current, user.hash):
                raise HttpError(401, "the current password is wrong; nothing changed")
        hashed = await loop.run_in_executor(None, hash_password, new)
    try:
        everyone = read_users(users.path)
    except ValueError as e:
        raise HttpError(503, f"{e}; nothing changed") from None
    if everyone.get(user.name) != user:
        raise HttpError(409, "the user was changed meanwhile; log in again")
    changed = User(user.name, user.role, hashed)
    everyone[user.name] = changed
    try:
        write_users(users.path, everyone)
    except OSError as e:
        raise HttpError(503, f"cannot write {users.path}: {e.strerror or e}; nothing changed") from None
    return changed
