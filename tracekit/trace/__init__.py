"""The trace file: its model, the envelope built from a recorder's state, schema and semantic
validation, the atomic sink, history naming and retention. Nothing here imports the recorder.
"""

__all__: list[str] = []
