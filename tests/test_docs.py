"""The docs a newcomer reads hold true: every command they show is one the CLI accepts, every link leads to a
file that exists, and the README stays a front door. (The README's commands also run for real, in
test_commands.py.)"""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from flows.cli_args import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell)\n(.*?)^```", re.S | re.M)
ENTRY_POINTS = {"ablate": [], "python -m flows.ablation": ["run"], "python -m flows.data_quality_gate": ["validate"]}


def shell_commands(text: str) -> list[str]:
    """Each command line of the page's shell blocks: continuations joined, comments and prompts dropped, and a
    command chained with && or || split in two."""
    commands = []
    for block in SHELL_BLOCK.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            command: list[str] = []
            for word in words + ["&&"]:
                if word in ("&&", "||", ";", "|"):
                    if command:
                        commands.append(shlex.join(command))
                    command = []
                else:
                    command.append(word)
    return commands


def ablate_arguments(command: str) -> list[str] | None:
    """The arguments `ablate` receives for a command that runs it (environment assignments in front skipped);
    None for other programs (prefect, dask, make...)."""
    words = shlex.split(command)
    while words and re.match(r"^[A-Z_]+=", words[0]):
        words.pop(0)
    for entry, prefix in ENTRY_POINTS.items():
        if words[:len(entry.split())] == entry.split():
            return prefix + words[len(entry.split()):]
    return None


DOC_COMMANDS = [(page.relative_to(ROOT), command) for page in PAGES for command in shell_commands(page.read_text())
                if ablate_arguments(command) is not None]


def test_the_docs_show_the_commands_this_test_checks():
    assert len(DOC_COMMANDS) >= 15, DOC_COMMANDS  # a page reorganised out of shell blocks would escape the check
    assert {page.name for page, _ in DOC_COMMANDS} >= {"README.md", "command-line.md", "datasets.md", "gate.md",
                                                       "scaling-out.md"}


@pytest.mark.parametrize("page, command", DOC_COMMANDS, ids=[f"{p.name}: {c}" for p, c in DOC_COMMANDS])
def test_every_command_in_the_docs_is_accepted_by_the_cli(page, command):
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            build_parser().parse_args(ablate_arguments(command))
        except SystemExit as exit:
            pytest.fail(f"{page}: `{command}` is refused (exit {exit.code}): {errors.getvalue().strip()}")


def test_a_mistyped_command_would_be_caught():
    """The check above can fail: an option the CLI does not have is refused."""
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        build_parser().parse_args(ablate_arguments("ablate run --dataset photos/ --epochz 5"))
    assert shell_commands("```bash\nPREFECT_API_URL=x ablate run \\\n  --aa  # the control\nmake run && ablate grid "
                          "--grid g.toml\n```\n") == ["PREFECT_API_URL=x ablate run --aa", "make run",
                                                      "ablate grid --grid g.toml"]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_leads_to_a_file_that_exists(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto: are not ours to check
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "make run" in readme and "make test" in readme and "docs/report-first-screen.png" in readme
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"the README does not link to docs/{page.name}"
