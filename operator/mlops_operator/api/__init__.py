"""Pydantic v2 models of the four kinds: the single source of truth for the CRDs."""
