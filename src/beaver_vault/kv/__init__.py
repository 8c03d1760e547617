"""Beaver-Vault: kv."""
