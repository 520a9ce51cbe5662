"""Active health probes run on the event loop: TCP connects, HTTP GETs and MySQL queries to
persistent instances, many at once and no thread per probe (nacos_actors.probes.prober.Prober).
What to probe and when is decided by nacos_actors.core.probes; this package only runs probes."""
