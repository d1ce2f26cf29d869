"""The technician's web console (issue 19, docs/console.md): HTTPS on the [console] listener,
served by the agent from the same live state and the same local actions as its status socket.

    users.py     technicians and viewers: scrypt password hashes in <data>/console/users.json
    tls.py       the listener's certificate: the configured one or a generated self-signed one
    sessions.py  sessions (cookie, CSRF token, expiry) and the login lockout (pure: `now` given)
    http.py      a small, bounded HTTP/1.1 reader and writer over asyncio streams
    stream.py    server-sent events: one snapshot per second at most, shared by every client
    audit.py     every action and login: a log line and an event in the outbox
    account.py   a user sets their own password (required after a one-time code)
    logtail.py   the agent's recent log lines, kept in a ring for the page and the bundle
    checks.py    doctor (`cabinet doctor --json` as a child process), config check of an upload
    bundle.py    the diagnostics bundle (tar.gz in memory, secrets removed)
    diag.py      the routes of the log tail, doctor, config check and bundle
    pages.py     the page shown while there is no user
    server.py    the routes: the page, login/logout, status, events, actions
    static/      the page: one HTML, one JS, one CSS file (no CDN, no build step)
"""
