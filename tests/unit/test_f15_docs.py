"""What the user-facing files promise (issue 15): docs written to the user, naming only files
a checkout has; one `OWNER` placeholder; a Dockerfile that is the Containerfile; commands that
work with or without sudo."""

from __future__ import annotations

import glob
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_DOCS = sorted(
    [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        ROOT / "homeassistant-addon/mqtt2sms/DOCS.md",
        ROOT / "config.yaml",
        *(p for p in ROOT.glob("examples/**/*") if p.is_file()),
    ]
)
# what a user has no copy of, or no one to ask: the project's internal contract and its team
FORBIDDEN = re.compile(
    r"SPEC|\bthe spec\b|spec in the source|\bthe lead\b|PARTS\.md|STYLE\.md|mqtt2sms/config\.py",
    re.IGNORECASE,
)
_PATH = re.compile(r"`([A-Za-z0-9_.*-]+(?:/[A-Za-z0-9_.*-]+)*/?)`")


def _tracked() -> list[str]:
    """The repository's files: git's list, or (a copy outside git, as the mutation run
    makes) every file below the root but the tools' own folders."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0:
        return out.stdout.splitlines()
    skip = {".git", ".venv", "mutants", "__pycache__", ".pytest_cache", ".mypy_cache"}
    return [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*")
        if p.is_file() and not skip.intersection(p.relative_to(ROOT).parts)
    ]


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("doc", USER_DOCS, ids=_ids(USER_DOCS))
def test_user_docs_never_cite_the_spec_or_the_team(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    found = [
        f"{i}: {line.strip()}"
        for i, line in enumerate(text.splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert found == []


@pytest.mark.parametrize("doc", USER_DOCS, ids=_ids(USER_DOCS))
def test_user_docs_name_only_files_a_checkout_has(doc: Path) -> None:
    """A `path` whose first part is a top-level entry of the repository must exist in it."""
    tracked = _tracked()
    top = {name.split("/")[0] for name in tracked}
    missing = []
    for token in _PATH.findall(doc.read_text(encoding="utf-8")):
        first = token.split("/")[0]
        if first not in top or ("/" not in token and "." not in token):
            continue  # not a path in the repository (a key, a command, a path elsewhere)
        if first == "mqtt2sms" and not token.endswith(".py"):
            continue  # an MQTT topic under the base topic (mqtt2sms/status)
        if not glob.glob(str(ROOT / token.rstrip("/"))):
            missing.append(token)
    assert missing == []


def test_the_dockerfile_is_the_containerfile() -> None:
    assert (ROOT / "Dockerfile").read_bytes() == (ROOT / "Containerfile").read_bytes()
    assert (ROOT / ".dockerignore").read_bytes() == (ROOT / ".containerignore").read_bytes()


def test_the_image_carries_the_embedded_extra() -> None:
    text = (ROOT / "Containerfile").read_text(encoding="utf-8")
    assert re.search(r'^ARG EXTRAS="\[embedded\]"$', text, re.MULTILINE)
    assert '"/src${EXTRAS}"' in text


_OWNER_URL = "github.com/" + "OWNER/"  # spelt apart: the release's sed must not rewrite it


def _release_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Releasing", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return block.splitlines()


def test_every_owner_placeholder_is_the_one_the_release_steps_set() -> None:
    """Each `OWNER` in the repository is `github.com/OWNER/...`, and the README's release
    steps replace exactly that: after them, only the steps themselves still say OWNER."""
    commands = _release_commands()
    assert commands[0].startswith("OWNER=")
    sed = next(c for c in commands if "sed -i" in c)
    m = re.search(r'"s#(.+?)#(.+?)#g"', sed)
    assert m is not None
    pattern, replacement = m.group(1), m.group(2).replace("$OWNER", "acme")
    assert re.sub(pattern, replacement, _OWNER_URL) == "github.com/acme/"
    left = []
    seen = 0
    for name in _tracked():
        path = ROOT / name
        if name.startswith("tests/") or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        seen += text.count(_OWNER_URL)
        after = re.sub(pattern, replacement, text)
        for i, line in enumerate(after.splitlines(), 1):
            if "OWNER" in line and line not in commands:
                left.append(f"{name}:{i}: {line.strip()}")
    # the add-on's three manifests, the README and the Pi guide's clone URL
    assert seen >= 5
    readme_section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Releasing")[1]
    left = [
        x
        for x in left
        if not (x.startswith("README.md:") and x.split(": ", 1)[1] in readme_section)
    ]
    assert left == []


@pytest.mark.parametrize("name", ["repository.yaml", "homeassistant-addon/mqtt2sms/config.yaml"])
def test_the_addon_manifests_use_the_placeholder(name: str) -> None:
    assert f"url: https://{_OWNER_URL}mqtt2sms" in (ROOT / name).read_text(encoding="utf-8")


def test_the_readme_commands_work_without_sudo() -> None:
    """A root shell (a container, many Pi images) has no sudo: no README command needs it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    bare = [
        line
        for block in blocks
        for line in block.splitlines()
        if re.search(r"(^|[;&|]\s*)sudo\b", line.strip())
    ]
    assert bare == []


def test_the_pi_guide_says_what_to_do_without_sudo_and_on_trixie() -> None:
    guide = (ROOT / "docs/raspberry-pi.md").read_text(encoding="utf-8")
    intro = guide.split("## 1.", 1)[0]
    assert "root shell" in intro and "leave\nthe word `sudo` out" in intro
    assert "trixie" in intro and "3.13" in intro
    assert f"git clone https://{_OWNER_URL}mqtt2sms.git" in guide


def test_code_comments_cite_the_docs_not_the_spec() -> None:
    """The package and its tests point at the docs a user has, never at an internal SPEC."""
    cites = re.compile(r"\bSPEC\b|SPEC\.md|\bthe spec\b|SPEC's")
    found = []
    for path in sorted([*ROOT.glob("mqtt2sms/**/*.py"), *ROOT.glob("tests/**/*.py")]):
        if path.name == Path(__file__).name:
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if cites.search(line):
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert found == []


def test_the_shipped_config_points_at_the_reference() -> None:
    head = (ROOT / "config.yaml").read_text(encoding="utf-8").split("\n\n", 1)[0]
    assert "docs/config.md describes every key" in head
