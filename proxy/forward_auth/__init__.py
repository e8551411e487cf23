"""Forward-auth: a web server in front asks authshim who a page view's session belongs to.

- ``answer``: the answer for a session cookie (status and headers, cacheable for
  ``session.forward_auth_ttl``), the same wherever it is asked;
- ``listener``: the lean listener (``session.forward_auth_listen``) that gives that answer to
  every request on its own port, without aiohttp's per-request cost.

The main listener's ``GET /.authshim/session`` (``proxy/flows/session.py``) gives it too.
"""
