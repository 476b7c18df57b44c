"""Seed-shaped HTTP surfaces: the seeds' exact paths, bodies and envelopes over our services."""
