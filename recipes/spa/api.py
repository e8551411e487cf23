"""The JSON API back end of a single-page app (FastAPI), with the OAuth2 password-flow token
login of FastAPI's tutorial, and the user authshim names trusted in ``X-Forwarded-User``.

Run: ``SPA_USERS='{"bob": ["bob@example.com", "pw"]}' uvicorn api:app --port 8000``.
"""

import hmac
import json
import os
import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm

# The legacy user table: username -> (email, password). A real app keeps hashes in a database.
USERS: dict[str, tuple[str, str]] = {
    name: (email, password)
    for name, (email, password) in json.loads(os.environ.get("SPA_USERS", "{}")).items()
}
IDS = {name: i for i, name in enumerate(sorted(USERS), start=1)}
# The addresses allowed to name a user in X-Forwarded-User: authshim's and nginx's.
PROXIES = os.environ.get("AUTHSHIM_PROXIES", "127.0.0.1 ::1").split()
TOKENS: dict[str, str] = {}

app = FastAPI()
bearer = OAuth2PasswordBearer(tokenUrl="/api/token", auto_error=False)


def profile(name: str) -> dict[str, object]:
    return {"id": IDS[name], "username": name, "email": USERS[name][0]}


@app.post("/api/token")
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, str]:
    """The SPA's login: a bearer token for the right username and password."""
    user = USERS.get(form.username)
    if user is None or not hmac.compare_digest(user[1], form.password):
        raise HTTPException(401, "Incorrect username or password")
    value = secrets.token_urlsafe(24)
    TOKENS[value] = form.username
    return {"access_token": value, "token_type": "bearer"}


def current_user(
    request: Request,
    token: Annotated[str | None, Depends(bearer)],
    x_forwarded_user: Annotated[str | None, Header()] = None,
) -> str:
    """The user authshim names (from authshim or nginx only), else the bearer token's."""
    client = request.client.host if request.client else ""
    if x_forwarded_user and client in PROXIES and x_forwarded_user in USERS:
        return x_forwarded_user
    if token and token in TOKENS:
        return TOKENS[token]
    raise HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})


@app.get("/api/users/me")
def me(user: Annotated[str, Depends(current_user)]) -> dict[str, object]:
    """Who is logged in: what the SPA shows, and what authshim captures."""
    return profile(user)


@app.get("/api/notes")
def notes(user: Annotated[str, Depends(current_user)]) -> dict[str, object]:
    """Something only the logged-in user may read."""
    return {"owner": user, "notes": [f"{user}'s first note"]}
