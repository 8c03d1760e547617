"""Beaver-Vault: storage."""
