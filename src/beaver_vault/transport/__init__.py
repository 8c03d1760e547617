"""Beaver-Vault: transport."""
