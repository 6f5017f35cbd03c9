"""How long `impasto COMMAND --help` takes in a fresh interpreter, per subcommand.

A flag error takes as long: both end when the subcommand's flags module has parsed
(impasto/cli.py), before TensorFlow or Beam would load. With ``--baseline-tree DIR``
(another checkout of this repository) the same commands of that tree are timed too,
interleaved with this one's, so that the two compare on one machine in one run. Both
trees run through the same `impasto.cli.main` call, from a folder that maps the
packages as setup.py's package_dir does.

Example:
    .venv/bin/python bench/cli_start.py
    git worktree add /tmp/before 5712aa6
    .venv/bin/python bench/cli_start.py --baseline-tree /tmp/before --repeats 5
"""

import argparse
import ast
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (bench/common.py)

from impasto.cli import SUBCOMMANDS  # noqa: E402


def code_folders(tree: Path) -> tuple[str, ...]:
    """The top-level folders `tree` installs as ``impasto.<folder>``: its setup.py's ``CODE_FOLDERS``.

    Read from the tree's own setup.py (not imported: that would run setup()), so a baseline tree
    with other folders is laid out as it installs.

    Raises:
        ValueError: the tree's setup.py assigns no ``CODE_FOLDERS``.
    """
    for node in ast.parse((tree / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "CODE_FOLDERS"
                                                for target in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise ValueError(f"{tree / 'setup.py'} assigns no CODE_FOLDERS")


RUN_MAIN = "import sys; sys.path.insert(0, sys.argv.pop(1)); from impasto.cli import main; sys.exit(main(sys.argv[1:]))"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", default=",".join(SUBCOMMANDS), help="comma-separated (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command per tree (default 3)")
    parser.add_argument("--baseline-tree", help="another checkout to time beside this one")
    return parser


def package_root(tree: Path, into: Path) -> Path:
    """A folder where ``import impasto`` finds `tree`'s code, laid out as an install of it."""
    package = into / "impasto"
    package.mkdir(parents=True)
    for module in (tree / "impasto").glob("*.py"):
        (package / module.name).symlink_to(module)
    for folder in code_folders(tree):
        (package / folder).symlink_to(tree / folder, target_is_directory=True)
    return into


def help_seconds(root: Path, command: str) -> float:
    """Wall seconds of `impasto COMMAND --help` with `root`'s code, in a new interpreter."""
    start = time.perf_counter()
    finished = subprocess.run([sys.executable, "-c", RUN_MAIN, str(root), command, "--help"], capture_output=True,
                              text=True, timeout=300)
    seconds = time.perf_counter() - start
    if finished.returncode != 0 or not finished.stdout.startswith("usage:"):
        raise SystemExit(f"impasto {command} --help failed in {root}: {finished.stderr[-2000:]}")
    return seconds


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    commands = [command.strip() for command in args.commands.split(",") if command.strip()]
    with tempfile.TemporaryDirectory(prefix="impasto-cli-start-") as scratch:
        trees = {"this": package_root(common.REPO_ROOT, Path(scratch) / "this")}
        if args.baseline_tree:
            trees["baseline"] = package_root(Path(args.baseline_tree).resolve(), Path(scratch) / "baseline")
        seconds = {(tree, command): [] for tree in trees for command in commands}
        for repeat in range(args.repeats):
            for command in commands:
                for tree, root in trees.items():  # Interleaved: both trees see the same load.
                    seconds[tree, command].append(help_seconds(root, command))
            common.log(f"repeat {repeat + 1} of {args.repeats} done")
    figures = {}
    for command in commands:
        figures[command] = {tree: common.summarize(seconds[tree, command]) for tree in trees}
        if "baseline" in trees:
            figures[command]["baseline_over_this"] = (figures[command]["baseline"]["median"]
                                                      / figures[command]["this"]["median"])
    common.print_json({"commands": figures, "baseline_tree": args.baseline_tree, "environment": common.environment()})


if __name__ == "__main__":
    main()
