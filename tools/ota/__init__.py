"""The operators' side of over-the-air updates: release bundles, the TUF repository
commands, a static server for it, and staged rollouts."""
