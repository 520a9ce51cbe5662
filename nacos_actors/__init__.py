"""nacos-actors: a drop-in Nacos naming server built as pykka actors."""

__version__ = "0.1.0"
