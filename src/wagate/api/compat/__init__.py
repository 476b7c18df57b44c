"""Seed-shaped surfaces: paths, field names and envelopes exactly as a seed gives them."""
