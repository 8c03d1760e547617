"""Beaver-Vault: transport, the raft port between nodes.

Theory of operation: ``base.Transport`` is the contract the node driver uses (sync ``send``
that never blocks, ``set_peers``, ``set_cluster_id``); Raft tolerates loss, so every kind of
trouble is a counted drop, never a wait or an exception. ``codec`` is the pure wire format:
length-prefixed, versioned binary frames with bounded lengths, each carrying the sender's
cluster id. ``tcp.TcpTransport`` is the Trio implementation: one receive-only inbound
connection per remote writer, one outbound writer task per peer with a bounded queue,
batched writes and reconnection with jittered exponential backoff. The simulator uses its
own network and never imports ``tcp``.
"""
