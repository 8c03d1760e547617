"""The roles a Raft node can be in (``RaftCore.role``)."""

FOLLOWER = "follower"
PRE_CANDIDATE = "pre-candidate"
CANDIDATE = "candidate"
LEADER = "leader"
