"""Tables, figures and the generated sections of docs/, made from runs' ``results.json``
and logged histories (never from the loggers' internals).

Each module with a command line runs as ``python -m trufl.reporting.<module>``;
``scripts/<module>.py`` is the same entry point. Importing the package imports nothing
heavy (matplotlib and torch are imported by the modules that draw).
"""
