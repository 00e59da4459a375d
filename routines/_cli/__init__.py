"""The `routines` command: a program, not part of the library's face.

`main.py` parses the command line and dispatches to one module per group of subcommands
(`worker.py`, ...); `common.py` holds what the commands share (the store options, the store's
opening, the `Command` record), `output.py` prints tables and JSON, `logs.py` configures logging
for the program. Every command is a thin view over the public Python API. `import routines`
loads none of this.
"""
