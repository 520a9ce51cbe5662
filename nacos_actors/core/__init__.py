"""Pure cores: no threads, sockets, clock or global random. Time comes in as `now_ms`."""
