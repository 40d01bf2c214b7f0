from setuptools import find_packages, setup

PACKAGE = "oft_training"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={PACKAGE: ["configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="oft_ros developers",
    maintainer_email="oft-ros@users.noreply.github.com",
    description="Fine-tuning OFT policies from rosbag2 recordings: record, fit the normalizer, export, train.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "record = oft_training.cli.record:main",
            "fit_normalizer = oft_training.cli.fit_normalizer:main",
            "export = oft_training.cli.export:main",
            "train = oft_training.cli.train:main",
            "bench_export = oft_training.bench.export:main",
            "bench_training = oft_training.bench.training:main",
        ],
    },
)
