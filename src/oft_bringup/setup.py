from glob import glob

from setuptools import find_packages, setup

PACKAGE = "oft_bringup"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.perspective")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="oft_ros developers",
    maintainer_email="oft-ros@users.noreply.github.com",
    description="Launch files, parameter files, recording presets and the rqt view of the OFT suite.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["bringup = oft_bringup.bringup:main"]},
)
