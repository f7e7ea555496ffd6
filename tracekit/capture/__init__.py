"""What is recorded about a value: its canonical form and blake3 hash, its redacted capture, and
the coercion of runner-given fields to the types the envelope needs. Nothing here imports the
recorder or the trace format.
"""

__all__: list[str] = []
