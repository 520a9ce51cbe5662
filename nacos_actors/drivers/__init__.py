"""Drivers: each feeds one pure core its inputs and carries out what the core answers through an
Outbox. They own no thread, socket or clock: a pykka actor (nacos_actors.bridge.DriverActor)
runs each in a real node, and the cluster simulation (tests/sim) runs the very same classes
over a fake network and a fake clock."""
