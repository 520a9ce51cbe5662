"""Raft groups on pysyncobj: the group wrapper a Raft actor ticks, and the shims that make the
library safe to expose (no code from pickles, fsync before acknowledgement, bounded frames)."""
