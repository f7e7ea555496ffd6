"""The pieces of the HTML report (:mod:`tracekit.report` assembles them)."""

__all__: list[str] = []
