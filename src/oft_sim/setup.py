from setuptools import find_packages, setup

PACKAGE = "oft_sim"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="oft_ros developers",
    maintainer_email="oft-ros@users.noreply.github.com",
    description="Simulated bimanual ALOHA (MuJoCo) speaking the real driver interfaces, scripted demos, evaluation.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "aloha_sim = oft_sim.nodes.aloha_sim:main",
            "scripted_demos = oft_sim.cli.scripted_demos:main",
            "evaluate = oft_sim.cli.evaluate:main",
            "probe_policy = oft_sim.cli.probe_policy:main",
            "sim_demo = oft_sim.cli.sim_demo:main",
            "bench_sim = oft_sim.bench:main",
        ],
    },
)
