"""Beaver-Vault: node."""
