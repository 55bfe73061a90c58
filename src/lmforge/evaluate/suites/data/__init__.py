"""Fact tables written by the project (no third-party dataset text), one small module each."""
