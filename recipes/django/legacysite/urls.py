"""URLs: django.contrib.auth's views under /accounts/, and the site's own."""

from django.urls import include, path

from legacysite import views

urlpatterns = [
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/login", views.api_login),
    path("api/me", views.api_me),
    path("internal/users", views.internal_users),  # authshim: the look-up
    path("private/", views.private),
]
