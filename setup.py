"""Which packages the distribution holds (the rest of its metadata is pyproject.toml's): d2lexp's
own, its Hydra launcher plugin, and the configs of the top-level conf/ as the package d2lexp.conf,
every config group's folder with it, so an installed d2lexp composes them from the package
(d2lexp.config finds them there), whatever folder it runs in."""

from setuptools import find_namespace_packages, find_packages, setup

configs = ["d2lexp.conf", *(f"d2lexp.conf.{name}" for name in find_namespace_packages("conf"))]
setup(
    packages=[
        *find_packages(include=["d2lexp", "d2lexp.*"]),
        *find_namespace_packages(include=["hydra_plugins.*"]),
        *configs,
    ],
    package_dir={"d2lexp.conf": "conf"},
    package_data={name: ["*.yaml"] for name in configs},
)
