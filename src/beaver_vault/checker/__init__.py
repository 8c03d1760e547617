"""Beaver-Vault: checker."""
