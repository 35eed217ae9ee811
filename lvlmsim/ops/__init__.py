"""Operator graph: tokenization and the ops of encode, prefill and decode (no hardware knowledge)."""
