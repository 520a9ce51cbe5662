"""Request parameters parsed once, at the edge, into typed values: one module per kind of value
(base, names, instances, metadata, clients). Import each name from the module that defines it."""
