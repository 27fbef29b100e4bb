import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def fenced_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_ci_runs_the_readme_test_command() -> None:
    ci_commands = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_commands and ci_commands[-1] in [block.strip() for block in fenced_blocks("bash")]


def test_readme_python_examples_run() -> None:
    pytest.importorskip("timm")
    blocks = fenced_blocks("python")
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_the_first_code_block_installs_what_it_needs_and_the_cpu_wheel_is_named() -> None:
    first = re.search(r"```(\w+)\n(.*?)```", README, flags=re.DOTALL)
    assert first is not None and first.group(1) == "bash"
    assert "pip install 'stadb-layers[timm]'" in first.group(2)
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in README


def test_the_demo_paragraph_names_machines_resume_and_the_seed_grid() -> None:
    text = " ".join(README.split())
    for expected in (
        "stadb-reid demo --resume",
        "elapsed time and the training steps/s",
        "2-core AMD EPYC VM (AVX-512)",
        "2-core Intel Xeon VM",
        "stadb-reid sweep demo_seeds",
    ):
        assert expected in text, expected
    assert "idle 2-core VM (after the install)" not in text
