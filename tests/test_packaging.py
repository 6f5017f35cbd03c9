"""setup.py installs every package of the code folders: a subpackage it leaves out is missing from a clean install."""

import runpy
from unittest import mock

from conftest import REPO_ROOT


def test_setup_lists_every_folder_with_an_init_py():
    with mock.patch("setuptools.setup") as setup:
        runpy.run_path(str(REPO_ROOT / "setup.py"))
    arguments = setup.call_args.kwargs
    on_disk = {"impasto"}
    for folder in ("model", "training", "serving", "export"):
        on_disk |= {"impasto." + ".".join(init.parent.relative_to(REPO_ROOT).parts)
                    for init in (REPO_ROOT / folder).rglob("__init__.py")}
    assert set(arguments["packages"]) == on_disk
    assert {"impasto.model.lossnet", "impasto.model.optimize", "impasto.model.feedforward"} <= on_disk


def test_the_two_methods_share_only_the_loss_network_and_the_top_level_modules():
    for package, other in (("optimize", "feedforward"), ("feedforward", "optimize"), ("lossnet", "optimize"),
                           ("lossnet", "feedforward")):
        for path in (REPO_ROOT / "model" / package).glob("*.py"):
            assert f"impasto.model.{other}" not in path.read_text(), path


def test_every_requirement_is_pinned_to_one_version():
    for name in ("requirements.txt", "requirements-dev.txt"):
        lines = (REPO_ROOT / name).read_text().splitlines()
        requirements = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        assert requirements, name
        unpinned = [line for line in requirements if "==" not in line]
        assert not unpinned, f"{name}: {unpinned}"
