"""``authshim`` command groups that live in modules of their own (see ``proxy.cli``)."""
