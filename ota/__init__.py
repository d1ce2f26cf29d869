"""Over-the-air updates (bundles, TUF metadata verification, A/B slots, trial boot,
commit and rollback). Imports nothing of ours; filled by the OTA issue."""
