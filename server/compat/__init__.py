"""Where the server relies on dependencies' private internals: one module per dependency.

Nothing else in the code base touches a private attribute of a dependency or patches it.
Each module is listed in ``server/compat/README.md`` (what, why, which versions, how to
drop it); the versions are pinned in ``pyproject.toml``, and a test per module
(``tests/server/test_compat_*.py``) checks that the internals it uses still exist, so an
upgrade fails loudly in the tests rather than quietly in a council hall.
"""
