"""A deterministic simulation of cluster members: the pure cores, an in-memory network, clients."""
