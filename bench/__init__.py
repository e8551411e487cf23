"""authshim benchmarks: `python -m bench [--quick]`, and the locustfile."""
