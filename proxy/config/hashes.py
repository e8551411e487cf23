"""[hashes]: the operator's recipes for legacy hash formats no one ships (issue 17).

    [[hashes.recipe]]
    name = "shop"
    steps = ["sha1", "hex", "concat salt value", "sha1", "hex"]
    pepper = "env:SHOP_PEPPER"          # optional
    test = { password = "known password", salt = "its salt", hash = "the legacy app's hash" }

A recipe must reproduce its ``test`` hash, or the config is refused: a wrong recipe would
otherwise leave its users unable to log in locally (it never lets a wrong password in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from proxy.config.reader import Reader
from store.hashes.recipe import Recipe, RecipeError, SelfTest, parse_recipe

HASHES_KEYS = ("recipe",)
RECIPE_KEYS = ("name", "steps", "pepper", "test")
TEST_KEYS = ("password", "salt", "hash")


def read_hashes(r: Reader, doc: Mapping[str, Any]) -> tuple[Recipe, ...]:
    """Every ``[[hashes.recipe]]``, parsed and self-tested."""
    recipes: list[Recipe] = []
    with r.table(doc, "hashes", HASHES_KEYS) as hashes:
        raw = hashes.get("recipe", [])
        if not isinstance(raw, list):
            r.error("recipe", "must be an array of tables ([[hashes.recipe]])")
            return ()
        names: set[str] = set()
        for i, item in enumerate(raw):
            with r.section(f"recipe[{i}]"):
                recipe = _recipe(r, item)
            if recipe is None:
                continue
            if recipe.name in names:
                r.error(f"recipe[{i}].name", f"{recipe.name!r} is defined twice")
            names.add(recipe.name)
            recipes.append(recipe)
    return tuple(recipes)


def _recipe(r: Reader, item: object) -> Recipe | None:
    if not isinstance(item, dict):
        r.error("", "must be a table")
        return None
    r.unknown(item, RECIPE_KEYS)
    name = r.get(item, "name", str, "")
    if not name:
        r.error("name", "is required")
        return None
    steps = item.get("steps")
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        r.error("steps", "must be a list of strings")
        return None
    pepper = r.secret(item, "pepper") if "pepper" in item else None
    test = r.subtable(item, "test", TEST_KEYS)
    if test is None:
        return None
    with r.section("test"):
        values = [test.get(key) for key in TEST_KEYS]
        texts = [v for v in values if isinstance(v, str)]
        if len(texts) != len(values):
            r.error("", "password, salt and hash must be strings")
            return None
    try:
        recipe = parse_recipe(
            name, steps, SelfTest(*texts), (pepper.value if pepper else "").encode()
        )
    except RecipeError as exc:
        r.error("steps", str(exc))
        return None
    if not recipe.passes_self_test():
        r.error("test", "the recipe does not reproduce this hash from this password and salt")
        return None
    return recipe
