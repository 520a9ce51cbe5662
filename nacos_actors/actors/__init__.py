"""Thin pykka actors: read the clock, call a core, carry out what it returns."""
