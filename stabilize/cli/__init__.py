"""The ``stabilize`` command line; never imported by ``import stabilize``."""
