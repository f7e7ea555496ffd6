"""Adapters that attach tracekit to runners people already use; each imports its library lazily."""

__all__: list[str] = []
