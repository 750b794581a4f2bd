"""Package discovery for the repository-root layout.

The repository root *is* the package ``soulid`` (ComfyUI imports the checkout
folder in ``custom_nodes/`` directly; pip installs the same files as
``soulid``). pyproject.toml cannot put a prefix on ``find`` discovery, so this
file finds every package below the root and maps it under ``soulid.``: a new
folder with an ``__init__.py`` ships without anyone listing it.
tests/test_wheel_install.py checks that the built wheel holds every module.
"""
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

EXCLUDE = ["tests", "tests.*", "benchmarks", "benchmarks.*", "docs", "docs.*", "build", "build.*", "dist", "dist.*"]


class BuildPy(build_py):
    """build_py that leaves this file out: it sits in the package root but is no module of ``soulid``."""

    def find_package_modules(self, package, package_dir):
        return [m for m in super().find_package_modules(package, package_dir)
                if not (package == "soulid" and m[1] == "setup")]


setup(
    package_dir={"soulid": "."},
    packages=["soulid"] + [f"soulid.{p}" for p in find_packages(where=".", exclude=EXCLUDE)],
    cmdclass={"build_py": BuildPy},
)
