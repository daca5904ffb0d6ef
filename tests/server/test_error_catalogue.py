"""One catalogue of error codes: every code the code base can answer is in it, with the
status it is raised with, and the web client has a Vietnamese and an English message for
each code."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from server.app import HTTP_ERROR_CODES
from server.errors import ERROR_CATALOGUE, ApiError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("server", "meeting", "messaging")
I18N = ROOT / "web_client" / "static" / "js" / "i18n.js"
# Codes the client alone produces.
# Codes the client meets that no Python code raises: a failed fetch, and the reverse
# proxy's own answer when no node answers (deploy/nginx/dienhong.conf).
CLIENT_ONLY = {"network_error", "unavailable"}


def _error_classes() -> dict[str, ApiError]:
    found: dict[str, ApiError] = {}
    stack = [ApiError]
    while stack:
        cls = stack.pop()
        found[cls.__name__] = cls  # type: ignore[assignment]
        stack.extend(cls.__subclasses__())
    return found


def raised_codes() -> dict[str, set[int | None]]:
    """Each code written in the code base, with the statuses it is raised with."""
    classes = _error_classes()
    codes: dict[str, set[int | None]] = {}
    for folder in SOURCES:
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    keywords = {k.arg: k.value for k in node.keywords}
                    code = keywords.get("code")
                    if not (isinstance(code, ast.Constant) and isinstance(code.value, str)):
                        continue
                    name = (
                        node.func.id
                        if isinstance(node.func, ast.Name)
                        else getattr(node.func, "attr", "")
                    )
                    status: int | None = None
                    if name in classes:
                        status = classes[name].status
                    given = keywords.get("status")
                    if isinstance(given, ast.Constant):
                        status = given.value
                    codes.setdefault(code.value, set()).add(status)
                elif isinstance(node, ast.ClassDef):
                    for statement in node.body:
                        if (
                            isinstance(statement, ast.Assign)
                            and [getattr(t, "id", "") for t in statement.targets] == ["code"]
                            and isinstance(statement.value, ast.Constant)
                        ):
                            codes.setdefault(statement.value.value, set()).add(None)
                elif isinstance(node, ast.Dict):
                    for key, value in zip(node.keys, node.values, strict=True):
                        if (
                            isinstance(key, ast.Constant)
                            and key.value == "code"
                            and isinstance(value, ast.Constant)
                            and isinstance(value.value, str)
                        ):
                            codes.setdefault(value.value, set()).add(None)
    for status, code in HTTP_ERROR_CODES.items():
        codes.setdefault(code, set()).add(status or None)
    return codes


def client_messages(name: str) -> dict[str, str]:
    text = I18N.read_text(encoding="utf-8")
    start = text.index(f"const {name} = {{")
    end = text.index("\n};", start)
    found = re.findall(r'^  (\w+): ("(?:[^"\\]|\\.)*"),$', text[start:end], re.M)
    return {key: json.loads(value) for key, value in found}


def test_every_code_in_the_code_base_is_catalogued_with_its_status() -> None:
    raised = raised_codes()
    assert len(raised) > 100
    missing = sorted(set(raised) - set(ERROR_CATALOGUE))
    assert missing == [], f"add these codes to ERROR_CATALOGUE in server/errors.py: {missing}"
    wrong = {
        code: sorted(s for s in statuses if s is not None)
        for code, statuses in raised.items()
        if {s for s in statuses if s is not None} - set(ERROR_CATALOGUE[code].statuses)
    }
    assert wrong == {}, wrong


def test_every_catalogued_code_has_a_meaning_and_is_used() -> None:
    raised = raised_codes()
    for code, entry in ERROR_CATALOGUE.items():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code), code
        assert entry.meaning.strip(), code
        assert all(400 <= status <= 599 for status in entry.statuses), code
        assert code in raised, f"{code} is catalogued but never answered"


def test_the_client_has_vietnamese_and_english_for_every_code() -> None:
    vi, en = client_messages("errorsVi"), client_messages("errorsEn")
    expected = set(ERROR_CATALOGUE) | CLIENT_ONLY
    assert set(vi) == expected, {
        "missing": sorted(expected - set(vi)),
        "unknown": sorted(set(vi) - expected),
    }
    assert set(en) == expected, {
        "missing": sorted(expected - set(en)),
        "unknown": sorted(set(en) - expected),
    }
    for code in expected:
        assert vi[code].strip() and en[code].strip(), code
    # Vietnamese text really is Vietnamese (not the English copied over).
    same = [code for code in expected if vi[code] == en[code]]
    assert same == []
    assert sum(
        bool(re.search("[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", vi[code]))
        for code in expected
    ) > 0.9 * len(expected)
