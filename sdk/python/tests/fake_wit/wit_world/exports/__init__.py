"""Fake exported interfaces."""
