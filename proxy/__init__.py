"""authshim's HTTP side: the proxy, its flows, sessions, CLI and admin listener."""
