"""Placeholder: the copy -> verify -> delete engine is being written."""
