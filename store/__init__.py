"""Everything authshim keeps: users, settings and counters, behind one interface."""
