"""The data plane: asyncio servers that move bytes as the current snapshot says.

Only stdlib, ``isthmus.snapshot``, ``isthmus.refs``, ``isthmus.proto`` and uvloop/httptools may
be imported here, so the data plane can never depend on how a snapshot was produced.
"""
