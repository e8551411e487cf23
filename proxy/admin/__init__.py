"""The admin listener: users API, stats, mode, export, metrics and the dashboard."""
