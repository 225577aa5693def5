"""The `shoal` command line: one module per command, imported only when used.

Each command module has four parts: options, build the request, call the API,
render to a string (pure, tested against golden files in tests/golden/).
"""
