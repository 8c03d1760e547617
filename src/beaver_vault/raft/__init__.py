"""Beaver-Vault: raft."""
