"""kernels/ installs as `recjax_kernels` (the PyPI name `kernels` belongs to another project)."""

import tomllib
from pathlib import Path

import recjax_kernels

REPO = Path(__file__).resolve().parents[2]
FOLDERS = {"recjax": REPO / "recjax", "recjax_kernels": REPO / "kernels"}


def _package_folders(name: str, root: Path) -> set[str]:
    return {
        ".".join([name, *init.parent.relative_to(root).parts]) for init in root.rglob("__init__.py")
    }


def test_pyproject_lists_every_package_and_maps_kernels():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {"recjax_kernels": "kernels"}
    on_disk = set().union(*(_package_folders(name, root) for name, root in FOLDERS.items()))
    assert set(setuptools["packages"]) == on_disk, "add new package folders to pyproject.toml"


def test_recjax_kernels_imports_from_the_kernels_folder():
    assert Path(recjax_kernels.__file__).resolve() == REPO / "kernels" / "__init__.py"
