"""Let Django trust the user authshim names in ``X-Forwarded-User``.

authshim strips every client copy of the header, so it can only come from authshim, provided
the site is reachable through authshim alone; ``AUTHSHIM_PROXIES`` also refuses it from any
other peer.
"""

from django.conf import settings
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.middleware import RemoteUserMiddleware


class AuthshimUserMiddleware(RemoteUserMiddleware):
    """Log in the user named by authshim; log out a header-made login when it goes away."""

    header = "HTTP_X_FORWARDED_USER"

    def process_request(self, request):
        if request.META.get("REMOTE_ADDR") not in settings.AUTHSHIM_PROXIES:
            request.META.pop(self.header, None)  # SECURITY: only authshim may name a user
        return super().process_request(request)


class AuthshimUserBackend(RemoteUserBackend):
    """authshim names existing users only: it never creates one."""

    create_unknown_user = False
