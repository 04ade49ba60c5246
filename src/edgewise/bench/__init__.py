"""Benchmark harnesses: ``edgewise bench NAME --json``."""
