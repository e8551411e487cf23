"""The legacy site's own JSON login and "who am I", and a private page."""

import hmac
import json

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model, login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST


def profile(user):
    """What the legacy site says about a user, and what authshim captures."""
    return {
        "id": user.pk,
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_active": user.is_active,
    }


@csrf_exempt
@require_POST
def api_login(request: HttpRequest) -> JsonResponse:
    """``POST /api/login`` with ``{"username", "password"}``: a session and the profile."""
    try:
        body = json.loads(request.body)
    except ValueError:
        return JsonResponse({"ok": False, "error": "bad json"}, status=400)
    user = authenticate(request, username=body.get("username"), password=body.get("password"))
    if user is None:
        return JsonResponse({"ok": False}, status=401)
    login(request, user)
    return JsonResponse({"ok": True, "user": profile(user)})


def api_me(request: HttpRequest) -> JsonResponse:
    """``GET /api/me``: the logged-in user's profile, 401 otherwise."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "not logged in"}, status=401)
    return JsonResponse(profile(request.user))


@require_GET
def internal_users(request: HttpRequest) -> JsonResponse:
    """``GET /internal/users?email=...`` or ``?username=...``: authshim's look-up.

    Answers the profile (as ``/api/me``), 404 when nobody has it, 409 when several users do
    (Django does not make emails unique: authshim then sends no mail rather than guess).
    """
    expected = settings.AUTHSHIM_LOOKUP_AUTH
    given = request.headers.get("Authorization", "")
    # SECURITY: clients reach this URL through authshim too; only the shared secret opens it.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return JsonResponse({"detail": "forbidden"}, status=403)
    users = get_user_model().objects
    if "email" in request.GET:
        found = users.filter(email__iexact=request.GET["email"])
    elif "username" in request.GET:
        found = users.filter(username__iexact=request.GET["username"])
    else:
        return JsonResponse({"detail": "give email or username"}, status=400)
    matches = list(found[:2])
    if not matches:
        return JsonResponse({"detail": "not found"}, status=404)
    if len(matches) > 1:
        return JsonResponse({"detail": "several users match"}, status=409)
    return JsonResponse(profile(matches[0]))


@login_required
def private(request: HttpRequest) -> HttpResponse:
    """A page only a logged-in user sees."""
    backend = request.session.get("_auth_user_backend", "").rsplit(".", 1)[-1]
    return HttpResponse(
        f"private page of {request.user.username} (via {backend})\n", content_type="text/plain"
    )
