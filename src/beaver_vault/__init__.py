"""Beaver-Vault: a replicated JSON key-value store on Raft, SQLite and Trio."""
__version__ = "0.1.0"
