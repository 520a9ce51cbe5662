"""`python -m nacos_actors` runs the same command line as `nacos-actors`."""

from nacos_actors.cli import entry_point

entry_point()
