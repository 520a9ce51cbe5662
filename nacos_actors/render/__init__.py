"""Registry snapshots rendered to the JSON that Nacos clients and tools read: `lists` (the
instance list, for GET /v1/ns/instance/list and every push packet), `views` (the other Nacos
documents: instance, service, catalog, subscribers, push state, members) and `prometheus`
(Prometheus HTTP service discovery). The HTTP front and the push actor both render, so nothing
here imports aiohttp or nacos_actors.http. Import each name from the module that defines it."""
