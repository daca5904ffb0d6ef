"""Settings: a misspelt ``DIENHONG_*`` variable stops the start, naming the closest valid
one; README's settings table is the one generated from ``server/settings.py``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from server.settings import Settings, SettingsError, setting_names
from server.settings_doc import (
    BEGIN,
    END,
    UndocumentedSettings,
    main,
    readme_table,
    setting_docs,
    settings_table,
    with_table,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("DIENHONG_WS_RATE_PER_SECS", "DIENHONG_WS_RATE_PER_SEC"),
        ("DIENHONG_DATABSE_URL", "DIENHONG_DATABASE_URL"),
        ("DIENHONG_LOGLEVEL", "DIENHONG_LOG_LEVEL"),
        ("DIENHONG_DIRECT_SOCKET_WRITE", "DIENHONG_DIRECT_SOCKET_WRITES"),
        ("DIENHONG_NEW_PASWORD", "DIENHONG_NEW_PASSWORD"),
    ],
)
def test_an_unknown_variable_names_the_closest_valid_one(typo: str, meant: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"DIENHONG_PORT": "9000", typo: "1"})
    assert str(caught.value) == f"unknown variable {typo}; did you mean {meant}?"


def test_an_unknown_variable_like_no_setting_says_so() -> None:
    with pytest.raises(SettingsError, match="DIENHONG_ZZZ; no setting has a similar name"):
        Settings.from_env({"DIENHONG_ZZZ": "1"})


def test_every_unknown_variable_is_named() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"DIENHONG_PROT": "1", "DIENHONG_HOTS": "x"})
    assert "DIENHONG_PROT" in str(caught.value) and "DIENHONG_HOTS" in str(caught.value)


def test_test_variables_and_the_cli_password_are_not_settings_but_allowed() -> None:
    settings = Settings.from_env(
        {
            "DIENHONG_TEST_DATABASE_URL": "postgresql://x",
            "DIENHONG_TEST_ANYTHING": "1",
            "DIENHONG_NEW_PASSWORD": "secret",
            "DIENHONG_PORT": "9000",
            "PATH": "/bin",
        }
    )
    assert settings.port == 9000


async def test_serve_with_a_misspelt_variable_stops_before_touching_anything(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "refused"
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIENHONG_")}
    env |= {"DIENHONG_DATA_DIR": str(data_dir), "DIENHONG_WS_PING_INTERVAL_SEC": "5"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "serve",
        "--port",
        "1",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert err.decode().strip() == (
        "configuration error: unknown variable DIENHONG_WS_PING_INTERVAL_SEC; "
        "did you mean DIENHONG_WS_PING_INTERVAL_SECS?"
    )
    assert out == b""
    # Stopped before migrating (which comes before binding): not even the data dir exists.
    assert not data_dir.exists()


def test_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_table(readme) == settings_table(), (
        "README's settings table differs from server/settings.py: "
        "run python -m server.settings_doc --write"
    )


def test_every_setting_is_in_the_table_with_its_description() -> None:
    docs = setting_docs()
    assert [doc.variable for doc in docs] == setting_names()
    assert all(doc.description and doc.section for doc in docs)
    table = settings_table(docs)
    for doc in docs:
        assert f"| `{doc.variable}` |" in table


def test_the_generator_reads_comments_sections_and_defaults() -> None:
    source = """
class Settings:
    # --- storage ---
    # Where this node keeps its files.
    data_dir: Path = Path("./dienhong-data")
    # Connections per node,
    # and as many again on overflow.
    db_pool_size: int = 10

    # --- meetings and media ---
    reminder_intervals: Mapping[str, int] = field(
        default_factory=lambda: {"express": 5 * 60})
"""
    with pytest.raises(UndocumentedSettings, match="DIENHONG_REMINDER_INTERVALS"):
        setting_docs(source)
    documented = source.replace(
        "    reminder_intervals", "    # Per urgency.\n    reminder_intervals"
    )
    docs = setting_docs(documented)
    assert [(d.section, d.variable, d.description) for d in docs] == [
        ("storage", "DIENHONG_DATA_DIR", "Where this node keeps its files."),
        (
            "storage",
            "DIENHONG_DB_POOL_SIZE",
            "Connections per node, and as many again on overflow.",
        ),
        ("meetings and media", "DIENHONG_REMINDER_INTERVALS", "Per urgency."),
    ]
    assert docs[0].default == 'Path("./dienhong-data")'
    # A factory's default is shown as the variable would be written.
    assert docs[2].default == "express=300,very_urgent=900,urgent=3600,normal=86400"
    table = settings_table(docs)
    assert table.startswith("**Storage**\n\n| variable | default | meaning |\n")
    assert "\n**Meetings and media**\n" in table


def test_write_replaces_only_the_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before = f"# Title\n\nIntro.\n\n{BEGIN}\n| old | table |\n{END}\n\n## After\n"
    readme.write_text(before, encoding="utf-8")
    assert main(["--check", "--readme", str(readme)]) == 1
    assert main(["--write", "--readme", str(readme)]) == 0
    after = readme.read_text(encoding="utf-8")
    assert after == with_table(before, settings_table())
    assert after.startswith("# Title\n\nIntro.\n\n" + BEGIN + "\n**Storage**")
    assert after.endswith(END + "\n\n## After\n")
    assert main(["--check", "--readme", str(readme)]) == 0
    # Written again, nothing changes.
    assert main(["--write", "--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == after


def test_a_readme_without_markers_is_an_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n", encoding="utf-8")
    assert main(["--write", "--readme", str(readme)]) == 2
    assert readme.read_text(encoding="utf-8") == "# Title\n"
