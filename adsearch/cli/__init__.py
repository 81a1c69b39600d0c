"""The ``adsearch`` command line: one small module per command group."""
