"""The README's examples run as written, in the order given, offline, twice (scripts are rerunnable).

Each ```python block runs as its own script (as a user saves and runs a snippet) and each ```bash
block as a bash script, in a temporary "clone" whose ``.venv`` is a throwaway virtual environment
layered over the one running these tests: ``. .venv/bin/activate``, ``pip install ...`` and ``mt``
run verbatim there and never change the real venv. ``make`` lines are the bootstrap that built
this very venv, so they are only checked to name real targets (``make -n``). A block right after
a ``<!-- skip-test -->`` line is not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.backends("sqlite")  # the README documents the default SQLite installation

ROOT = Path(__file__).resolve().parent.parent
SKIP_MARK = "<!-- skip-test -->"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
BASH_PRELUDE = 'make() { command make -s -n -C "$README_ROOT" "$@" >/dev/null; }  # checked, not run\n'


def readme_blocks() -> list[tuple[str, str]]:
    """The README's python and bash blocks in order, without those marked to skip."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip().splitlines()[-1:]
        if before != [SKIP_MARK]:
            found.append((match.group(1), match.group(2)))
    return found


def installed_example_tools() -> str | None:
    """Where mt-example-tools is installed in the venv running the tests, if it is."""
    try:
        return str(metadata.distribution("mt-example-tools")._path)  # type: ignore[attr-defined]
    except metadata.PackageNotFoundError:
        return None


def layered_venv(clone: Path) -> Path:
    """``clone/.venv``: a venv that sees this one's packages and has its own site-packages, pip and mt."""
    venv = clone / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # addsitedir, not a bare path: the editable installs' own .pth files must run too
    Path(purelib, "layered-over.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    for name, call in (("pip", "from pip._internal.cli.main import main"), ("mt", "from mt_core.cli import main")):
        script = venv / "bin" / name
        script.write_text(f"#!{python}\nimport sys\n{call}\nsys.exit(main())\n")
        script.chmod(0o755)
    return venv


def test_readme_examples_run_verbatim_in_order_and_again(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("example_tools_pkg", "plugins"):
        (clone / name).symlink_to(ROOT / name)
    before = installed_example_tools()  # `make demo` installs it in the real venv; the README must not
    venv = layered_venv(clone)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MT_") and k not in ("LLM_API_KEY", "API_BASE_URL", "MODEL_NAME", "VIRTUAL_ENV")}
    env.update(MT_HOME=str(clone / ".mt"), README_ROOT=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    blocks = readme_blocks()
    assert [lang for lang, _ in blocks].count("python") >= 3 and [lang for lang, _ in blocks].count("bash") >= 3

    for round_ in (1, 2):
        shell, outputs = dict(env), []
        for number, (lang, code) in enumerate(blocks):
            if lang == "python":
                script = tmp_path / f"readme_{number}.py"
                script.write_text(code)
                command = [str(venv / "bin" / "python"), str(script)]
            else:
                command = ["bash", "-euo", "pipefail", "-c", BASH_PRELUDE + code]
            done = subprocess.run(command, cwd=clone, env=shell, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"round {round_}, {lang} block {number}:\n{code}\n{done.stdout}\n{done.stderr}"
            if lang == "bash" and ". .venv/bin/activate" in code:  # the reader's shell stays activated
                shell = {**shell, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}"}
            if lang == "bash":  # and keeps what it exported (MT_HOME is this clone's, set above)
                for name, value in re.findall(r"^export (\w+)=(\S+)", code, re.MULTILINE):
                    if name != "MT_HOME":
                        shell[name] = value.strip("\"'")
            assert "Traceback" not in done.stderr, done.stderr
            outputs.append(done.stdout)
        text = "\n".join(outputs)
        assert "sk-of…ey" in text and "\n400\n" in text  # the masked key and the calculator's answer
        assert "pkg:human_size" in text and "3.0 MB" in text  # the package tool, enabled and run
        assert "rotated" in text and "deleted" in text  # mt keys rotate, then --finish
    assert (clone / ".mt" / "mt.db").is_file()
    assert installed_example_tools() == before  # the venv running the tests is unchanged
