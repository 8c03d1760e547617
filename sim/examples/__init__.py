"""Example workloads for ``python -m sim --workload FILE`` (see ``sim.workload_api``)."""
