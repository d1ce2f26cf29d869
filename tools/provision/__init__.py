"""Provisioning and PKI: the device CA, cabinet identities, certificates and keys."""
