"""What the TCP transport counts: ``Counters`` (mutable, shared by its outbound and inbound
sides) and ``TransportStatistics``, the frozen snapshot ``TcpTransport.statistics()`` returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    sent: int  # frames handed to the kernel (a frame partly written by flush counts once, in a batch)
    direct_sends: int  # writes by flush, for a connection whose writer task was idle
    received: int  # messages passed to deliver()
    dropped_queue_full: int
    dropped_no_address: int
    dropped_unencodable: int
    dropped_unreachable: int  # frames discarded after a failed connection attempt, or by a flush that found it broken
    dropped_wrong_cluster: int
    dropped_unknown_sender: int
    dropped_wrong_destination: int
    bad_frames: int  # inbound connections closed for bad framing
    connects: int
    connect_failures: int
    write_timeouts: int
    inbound_rejected: int  # connections refused beyond max_inbound
    inbound_rejected_per_host: int  # connections refused beyond max_inbound_per_host
    dropped_invalid: int  # absurd messages (inbound.problem): connection closed
    dropped_impostor: int  # a src other than the connection's sender: connection closed
    idle_closed: int  # inbound connections silent for idle_timeout_s
    partial_budget_closed: int  # inbound connections closed to keep partial frames in budget
    tls_handshake_failures: int  # inbound or outbound TLS handshakes that failed or timed out
    tls_no_identity: int  # inbound certificates naming no node id
    tls_wrong_peer: int  # outbound: the listener's certificate names another node
    partial_frame_bytes: int  # bytes held now in incomplete inbound frames
    inbound_connections: int
    peers: int
    peer_tasks: int  # running writer tasks
    queued_frames: int


@dataclass(slots=True)
class Counters:
    sent: int = 0
    direct_sends: int = 0
    received: int = 0
    dropped_queue_full: int = 0
    dropped_no_address: int = 0
    dropped_unencodable: int = 0
    dropped_unreachable: int = 0
    dropped_wrong_cluster: int = 0
    dropped_unknown_sender: int = 0
    dropped_wrong_destination: int = 0
    bad_frames: int = 0
    connects: int = 0
    connect_failures: int = 0
    write_timeouts: int = 0
    inbound_rejected: int = 0
    inbound_rejected_per_host: int = 0
    dropped_invalid: int = 0
    dropped_impostor: int = 0
    idle_closed: int = 0
    partial_budget_closed: int = 0
    tls_handshake_failures: int = 0
    tls_no_identity: int = 0
    tls_wrong_peer: int = 0
