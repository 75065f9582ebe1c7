"""Fake imported interfaces."""
