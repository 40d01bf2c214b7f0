from setuptools import find_packages, setup

PACKAGE = "oft_policy"

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
    description="OFT model, normalizer and runtime cores, with the policy and executor nodes.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = oft_policy.nodes.policy_node:main",
            "executor_node = oft_policy.nodes.executor_node:main",
            "bench_decoding = oft_policy.bench.decoding:main",
            "bench_executor = oft_policy.bench.executor:main",
        ],
    },
)
