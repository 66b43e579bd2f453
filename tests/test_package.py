from pathlib import Path

import langchain_ttc
from langchain_ttc.arith.checkpoints import arith_checkpoint


def test_all_names_are_exported_once() -> None:
    assert len(set(langchain_ttc.__all__)) == len(langchain_ttc.__all__)
    for name in langchain_ttc.__all__:
        assert hasattr(langchain_ttc, name), name


def test_importing_the_package_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, langchain_ttc; print('torch' in sys.modules, 'transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False False"


def test_checkpoints_are_package_data() -> None:
    package = Path(langchain_ttc.__file__).parent
    assert (package / "py.typed").is_file()
    for name in ("small", "large", "prm"):
        directory = arith_checkpoint(name)
        assert directory.parent.parent == package / "arith"
        for file in (
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "chat_template.jinja",
        ):
            assert (directory / file).is_file(), directory / file


def test_ci_runs_the_readme_test_command() -> None:
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:]]
    test_command = next(b for b in blocks if "pytest" in b)
    assert test_command in (root / ".ci" / "run").read_text().splitlines()


def test_readme_diagrams_are_generated_and_current() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    check = subprocess.run([sys.executable, str(root / "scripts" / "readme_diagrams.py"), "--check"], cwd=root)
    assert check.returncode == 0, "docs/strategies.md diagrams are stale: run python scripts/readme_diagrams.py"
