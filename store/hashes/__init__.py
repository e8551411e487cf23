"""Legacy password hash verifiers: one module per family, one registry.

    common    the Verifier record, constant-time compare, strict decoders
    django    pbkdf2_sha256$ pbkdf2_sha1$ bcrypt_sha256$ bcrypt$ argon2$ scrypt$ md5$ sha1$
              and unsalted md5 / sha1
    bcrypts   $2a$ $2b$ $2y$, WordPress 6.8+ $wp$2y$
    phpass    $P$ $H$ (WordPress <= 6.7, phpBB 3, Joomla 2.5+), Drupal 7 $S$ and U$
    crypt     $1$ $5$ $6$
    ldap      {SHA} {SSHA} {SHA256} {SSHA256} {SHA512} {SSHA512} {MD5} {SMD5}
    aspnet    ASP.NET Identity v2 and v3
    phc       $pbkdf2-*$ and $scrypt$ PHC strings (passlib's and RustCrypto's spelling)
    argon     $argon2id$ $argon2i$ $argon2d$, any parameters
    digest    Auth0's md5/sha1/sha256/sha512 with a salt before or after, as $digest$..
    recipe    the operator's steps for anything else, stored as $recipe$NAME$salt$hash

Every function here is pure and runs on the caller's thread: the password pool
(store/passwords.py) runs them on its own threads. ``verify`` never raises.
"""

from __future__ import annotations

from collections.abc import Sequence

from store.hashes import argon, aspnet, bcrypts, crypt, digest, django, ldap, phc, phpass
from store.hashes.common import Verifier
from store.hashes.recipe import PREFIX, Recipe, split_stored

# Most specific first: prefixes that contain others' prefixes come before them.
BUILTIN: tuple[Verifier, ...] = (
    *bcrypts.VERIFIERS,
    *phpass.VERIFIERS,
    *crypt.VERIFIERS,
    *ldap.VERIFIERS,
    *phc.VERIFIERS,
    *argon.VERIFIERS,
    *digest.VERIFIERS,
    *django.VERIFIERS,
    *aspnet.VERIFIERS,
)

__all__ = ["BUILTIN", "Hashes", "Recipe", "Verifier", "identify", "verify"]


class Hashes:
    """The registry: the built-in verifiers and the operator's recipes that pass their
    self-test (a recipe that fails it verifies nothing: its users are not verifiable)."""

    def __init__(self, recipes: Sequence[Recipe] = ()) -> None:
        self.recipes = {r.name: r for r in recipes if r.passes_self_test()}
        self.failed_recipes = tuple(r.name for r in recipes if r.name not in self.recipes)

    def identify(self, stored: str) -> Verifier | None:
        """Return the verifier for ``stored``'s format, or None when none knows it."""
        if stored.startswith(PREFIX):
            try:
                name = split_stored(stored)[0]
            except ValueError:
                return None
            recipe = self.recipes.get(name)
            if recipe is None:
                return None
            return Verifier(f"recipe:{name}", lambda s: s.startswith(PREFIX), recipe.check)
        for verifier in BUILTIN:
            if verifier.matches(stored):
                return verifier
        return None

    def verify(self, stored: str, password: str) -> bool:
        """Return whether ``password`` matches ``stored``; False for an unknown or malformed
        hash, never an exception, so a login can never crash on an imported row."""
        verifier = self.identify(stored)
        if verifier is None:
            return False
        try:
            return verifier.check(stored, password.encode("utf-8", "surrogatepass"))
        except (ValueError, KeyError, TypeError, IndexError, OverflowError, MemoryError):
            # Malformed: a wrong field count, bad base64, an absurd cost. Refuse.
            return False


_DEFAULT = Hashes()


def identify(stored: str) -> Verifier | None:
    """Return the built-in verifier for ``stored``'s format, or None."""
    return _DEFAULT.identify(stored)


def verify(stored: str, password: str) -> bool:
    """Check ``password`` against a stored hash of any built-in format; never raises."""
    return _DEFAULT.verify(stored, password)
