"""Beaver-Vault: api."""
