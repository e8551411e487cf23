"""A small legacy site on django.contrib.auth, standing in for yours in the Django recipe."""
