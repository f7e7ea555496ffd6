"""What tracekit keeps of a value: canonical forms for hashing, previews and redaction for capture."""
