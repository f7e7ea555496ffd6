"""The ``tracekit`` commands, one module each; ``tracekit.cli`` registers them on the group."""

__all__: list[str] = []
