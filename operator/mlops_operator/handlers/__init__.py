"""Thin kopf handlers: parse body, reconcile, apply, patch status."""
