"""End-to-end and micro benchmarks of fastasgi (not part of the test suite)."""
