"""Legacy hash verifiers (store/hashes): vectors made by the real apps, published vectors."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from store.hashes import Hashes, identify, verify
from store.hashes.recipe import RecipeError, SelfTest, parse_recipe, stored_form

PASSWORD = "lètmein-ü"  # non-ASCII: every verifier must read the password as UTF-8
PHPASS_CLASS = Path("/usr/share/wordpress/wp-includes/class-phpass.php")

DJANGO_SCRIPT = """
import json, django
from django.conf import settings
settings.configure()
django.setup()
from django.contrib.auth import hashers as h
# Django's own hashers; only the costs are lowered, so that the test stays fast.
class PB(h.PBKDF2PasswordHasher): iterations = 1000
class PB1(h.PBKDF2SHA1PasswordHasher): iterations = 1000
class BC(h.BCryptSHA256PasswordHasher): rounds = 5
class BC1(h.BCryptPasswordHasher): rounds = 5
class AR(h.Argon2PasswordHasher): memory_cost = 64; time_cost = 1; parallelism = 1
class SC(h.ScryptPasswordHasher): work_factor = 2 ** 10
out = {}
for c in (PB, PB1, AR, BC, BC1, SC, h.MD5PasswordHasher):
    x = c()
    out[x.algorithm] = x.encode(%r, x.salt())
print(json.dumps(out))
"""

PHP_SCRIPT = r"""
$p = $argv[1];
require $argv[2];
$wp = new PasswordHash(8, true);
echo json_encode([
  'bcrypt_2y' => password_hash($p, PASSWORD_BCRYPT, ['cost' => 5]),
  'argon2id' => password_hash($p, PASSWORD_ARGON2ID, ['memory_cost' => 1024, 'time_cost' => 1]),
  'argon2i' => password_hash($p, PASSWORD_ARGON2I, ['memory_cost' => 1024, 'time_cost' => 1]),
  'md5_crypt' => crypt($p, '$1$Zs7aQ1b2$'),
  'sha256_crypt' => crypt($p, '$5$rounds=6000$Qw3rtyS4lt$'),
  'sha512_crypt' => crypt($p, '$6$Qw3rtyS4lt$'),
  'phpass_P' => $wp->HashPassword($p),
  'phpass_H' => $wp->crypt_private($p, '$H$9aB3dE5gH'),
  'phpass_blowfish' => (new PasswordHash(8, false))->HashPassword($p),
  // WordPress 6.8's wp_hash_password, written out (Debian's WordPress predates 6.8):
  'wordpress_68' => '$wp' . password_hash(
      base64_encode(hash_hmac('sha384', $p, 'wp-sha384', true)), PASSWORD_BCRYPT, ['cost' => 5]),
]);
"""


@pytest.fixture(scope="module")
def django_hashes() -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-c", DJANGO_SCRIPT % PASSWORD],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


@pytest.fixture(scope="module")
def php_hashes() -> dict[str, str]:
    if not shutil.which("php") or not PHPASS_CLASS.exists():
        pytest.skip("php-cli or Debian's wordpress package is not installed (.ci/run does)")
    out = subprocess.run(
        ["php", "-r", PHP_SCRIPT, PASSWORD, str(PHPASS_CLASS)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return dict(json.loads(out.stdout))


def _checks(stored: str, password: str = PASSWORD) -> None:
    assert identify(stored) is not None, stored
    assert verify(stored, password), stored
    assert not verify(stored, password + "x"), stored
    assert not verify(stored, ""), stored


@pytest.mark.parametrize(
    "algorithm",
    ["pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "bcrypt", "scrypt", "md5"],
)
def test_django_make_password(django_hashes: dict[str, str], algorithm: str) -> None:
    """Every Django hasher's output (made by Django itself) verifies the password, no other."""
    _checks(django_hashes[algorithm])


def test_django_unsalted_and_sha1_published() -> None:
    """Django's sha1, unsalted_sha1 and unsalted_md5, from Django's own tests/auth_tests/
    test_hashers.py (those hashers are gone from Django 5.1, which is installed here)."""
    _checks("sha1$seasalt$cff36ea83f5706ce9aa7454e63e431fc726b2dc8", "lètmein")
    _checks("sha1$$6d138ca3ae545631b3abd71a4f076ce759c5700b", "lètmein")
    _checks("88a434c88cca4e900f7874cd98123f43", "lètmein")
    _checks("md5$$88a434c88cca4e900f7874cd98123f43", "lètmein")


@pytest.mark.parametrize(
    "kind",
    [
        "bcrypt_2y", "argon2id", "argon2i", "md5_crypt", "sha256_crypt", "sha512_crypt",
        "phpass_P", "phpass_H", "phpass_blowfish", "wordpress_68",
    ],
)  # fmt: skip
def test_php_hashes(php_hashes: dict[str, str], kind: str) -> None:
    """PHP's password_hash and crypt, WordPress's phpass class and WordPress 6.8's $wp$
    construction, all run by Debian's PHP, verify the password and no other."""
    _checks(php_hashes[kind])


def test_bcrypt_variants_and_long_password() -> None:
    """$2a$/$2b$/$2y$ name one algorithm; past 72 bytes bcrypt reads no further (as PHP)."""
    import bcrypt

    long = "p" * 80
    made = bcrypt.hashpw(long.encode()[:72], bcrypt.gensalt(4)).decode()
    for head in ("$2a$", "$2b$", "$2y$"):
        assert verify(head + made[4:], long)
        assert verify(head + made[4:], "p" * 72 + "something else")
        assert not verify(head + made[4:], "p" * 71)


@pytest.mark.parametrize(
    ("password", "stored"),
    [
        # Drupal 7, scripts/password-hash.sh (as shown in public write-ups) and a Java port's
        # tests of Drupal 7's _password_crypt.
        ("admin1", "$S$D2sypG2KL6EjTo08zxDCAx4D3lcAQx7Tk.hydYvH/hEDiNfo2AHS"),
        ("huan", "$S$DXZrp425p2VN9LXpDWxiBeqSZSPexyZNNPUo80fTTN2e/W15a97G"),
        ("Cookies1", "$S$Dr3Hm8Od9X0Ux/olZ.B8Uwh6./3E1l4nPfXebovKVvMB9zcmjkTn"),
        # dotnet/aspnetcore src/Identity/test/Identity.Test/PasswordHasherTest.cs
        ("my password", "AAABAgMEBQYHCAkKCwwNDg+ukCEMDf0yyQ29NYubggHIVY0sdEUfdyeM+E1LtH1uJg=="),
        ("my password", "AQAAAAAAAAD6AAAAEAhftMyfTJylOlZT+eEotFXd1elee8ih5WsjXaR3PA9M"),
        (
            "my password",
            "AQAAAAEAA9CQAAAAIESkQuj2Du8Y+kbc5lcN/W/3NiAZFEm11P27nrSN5/tId+bR1SwV8CO1Jd72r4C08OLv"
            "plNlCDc3oQZ8efcW+jQ=",
        ),
        ("my password", "AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHw"),
        ("my password", "AQAAAAEAACcQAAAAEAABAgMEBQYHCAkKCwwNDg+yWU7rLgUwPZb1Itsmra7cbxw2EFpwpVFIEtP+JIuUEw=="),  # noqa: E501
        # Drepper's "Unix crypt using SHA-256 and SHA-512", test vectors of the specification
        ("Hello world!", "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5"),
        (
            "Hello world!",
            "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0"
            "Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        ),
    ],
)
def test_published_vectors(password: str, stored: str) -> None:
    """Drupal 7 $S$, ASP.NET Identity v2/v3 and SHA-crypt's published vectors verify."""
    _checks(stored, password)


def test_drupal_imported_md5() -> None:
    """Drupal's U$ form (a Drupal 6 MD5 rehashed on import) verifies the plain password."""
    from store.hashes.phpass import DRUPAL_HASH_LENGTH, crypt_private

    inner = hashlib.md5(PASSWORD.encode()).hexdigest().encode()
    stored = "U" + crypt_private(inner, "$S$DabcdEFGH", "sha512")[:DRUPAL_HASH_LENGTH]
    _checks(stored)


def test_ldap_schemes() -> None:
    """{SHA}, {SSHA}, {SSHA512}: digest of password + salt, base64, salt after the digest
    (RFC 2307 / slappasswd; vectors built here from that definition)."""
    salt = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    pw = PASSWORD.encode()
    sha = base64.b64encode(hashlib.sha1(pw).digest()).decode()
    ssha = base64.b64encode(hashlib.sha1(pw + salt).digest() + salt).decode()
    ssha512 = base64.b64encode(hashlib.sha512(pw + salt).digest() + salt).decode()
    for stored in ("{SHA}" + sha, "{SSHA}" + ssha, "{ssha512}" + ssha512):
        _checks(stored)
    # slappasswd -h {SSHA} -s secret, as printed in OpenLDAP's admin guide examples
    assert identify("{SSHA}DkMTwBl+a/3DQTxCYEApdUtNXGgdUac3") is not None


def test_phc_pbkdf2_and_scrypt() -> None:
    """PBKDF2 and scrypt PHC strings in passlib's and RustCrypto's spelling verify (built here
    from hashlib and each writer's documented encoding)."""
    pw, salt = PASSWORD.encode(), b"0123456789abcdef"

    def ab64(raw: bytes) -> str:
        return base64.b64encode(raw).decode().rstrip("=").replace("+", ".")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode().rstrip("=")

    digest = hashlib.pbkdf2_hmac("sha256", pw, salt, 2000)
    _checks(f"$pbkdf2-sha256$2000${ab64(salt)}${ab64(digest)}")
    _checks(f"$pbkdf2-sha256$i=2000,l=32${b64(salt)}${b64(digest)}")
    sha1 = hashlib.pbkdf2_hmac("sha1", pw, salt, 2000)
    _checks(f"$pbkdf2$2000${ab64(salt)}${ab64(sha1)}")
    scrypt = hashlib.scrypt(pw, salt=salt, n=1 << 10, r=8, p=1, dklen=32)
    _checks(f"$scrypt$ln=10,r=8,p=1${b64(salt)}${b64(scrypt)}")


def test_unknown_and_malformed_never_raise() -> None:
    """Unknown formats are not identified; malformed rows of known ones refuse, never raise."""
    for stored in ("", "plain", "$9$x$y", "$recipe$nobody$AA$x", "{CRYPT}abc"):
        assert identify(stored) is None
        assert not verify(stored, PASSWORD)
    for stored in (
        "pbkdf2_sha256$abc$salt$x",
        "pbkdf2_sha256$99999999999$salt$x",  # an absurd cost is refused, not run
        "$5$rounds=99999999$salt$x",
        "$P$Bshort",
        "{SSHA}not base64!",
        "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        "scrypt$16384$salt$8$1$%%%",
        "$scrypt$ln=40,r=8,p=1$c2FsdA$aGFzaA",
    ):
        assert not verify(stored, PASSWORD), stored


def test_recipe_salted_double_sha1() -> None:
    """An operator's recipe for sha1(salt + sha1(password)), salt in its own column, verifies
    after passing its self-test; the stored form keeps the recipe's name and the salt."""
    inner = hashlib.sha1(b"s3cret").hexdigest()
    expected = hashlib.sha1(b"NaCl" + inner.encode()).hexdigest()
    recipe = parse_recipe(
        "shop", ["sha1", "hex", "concat salt value", "sha1", "hex"],
        SelfTest("s3cret", "NaCl", expected),
    )  # fmt: skip
    assert recipe.passes_self_test()
    hashes = Hashes([recipe])
    stored = stored_form("shop", "NaCl", expected)
    assert hashes.identify(stored) is not None
    assert hashes.verify(stored, "s3cret")
    assert not hashes.verify(stored, "s3cret ")
    assert not verify(stored, "s3cret")  # the default registry has no recipes


def test_recipe_with_pepper_hmac_and_repeat() -> None:
    """hmac with a pepper, repeat, base64 and literals compose as written."""
    pepper = b"pepper!"
    value = hmac_sha256(pepper, b"pw" + b"::" + b"salt")
    for _ in range(3):
        value = hashlib.sha256(value).digest()
    expected = base64.b64encode(value).decode()
    recipe = parse_recipe(
        "peppered", ["concat password =:: salt", "hmac sha256 pepper", "repeat 3 sha256", "base64"],
        SelfTest("pw", "salt", expected), pepper=pepper,
    )  # fmt: skip
    assert recipe.passes_self_test()
    assert Hashes([recipe]).verify(stored_form("peppered", "salt", expected), "pw")


def test_recipe_failing_self_test_verifies_nothing() -> None:
    """A recipe that does not reproduce its self-test is dropped: its users verify nothing."""
    recipe = parse_recipe("wrong", ["md5", "hex"], SelfTest("pw", "", "0" * 32))
    hashes = Hashes([recipe])
    assert hashes.failed_recipes == ("wrong",)
    stored = stored_form("wrong", "", hashlib.md5(b"pw").hexdigest())
    assert hashes.identify(stored) is None
    assert not hashes.verify(stored, "pw")


@pytest.mark.parametrize(
    "steps", [[], ["md6"], ["concat"], ["concat nothing"], ["repeat 0 md5"], ["hmac sha1"]]
)
def test_recipe_syntax_errors(steps: list[str]) -> None:
    """A recipe step that does not parse is refused with the step named."""
    with pytest.raises(RecipeError):
        parse_recipe("x", steps, SelfTest("pw", "", ""))


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    import hmac

    return hmac.new(key, msg, hashlib.sha256).digest()


def test_salted_digest_forms() -> None:
    """Auth0's salted digests (salt before or after the password) verify in their stored form."""
    from store.hashes.digest import stored_form as digest_form

    pw = PASSWORD.encode()
    _checks(digest_form("sha256", hashlib.sha256(b"NaCl" + pw).digest(), b"NaCl", "prefix"))
    _checks(digest_form("md5", hashlib.md5(pw + b"NaCl").digest(), b"NaCl", "suffix"))
    _checks(digest_form("sha1", hashlib.sha1(pw).digest()))
