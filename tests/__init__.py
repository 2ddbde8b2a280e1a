"""
Tests for idserver.
"""
