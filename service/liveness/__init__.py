"""Liveness: an active challenge-response check that a three-dimensional face of one person
followed a short random sequence of head poses (README, "Liveness (experimental)")."""
