"""Simulated bimanual ALOHA speaking the real driver interfaces."""
