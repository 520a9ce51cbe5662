"""The HTTP front: Nacos's OpenAPI turned into registry reads and commands."""
