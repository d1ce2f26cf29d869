"""cabinet doctor: on-site checks, one PASS / WARN / FAIL line each with a fix hint."""
