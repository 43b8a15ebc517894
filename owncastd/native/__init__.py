"""Compiled extensions over FFmpeg's libraries (sources in the top-level native/ folder)."""
