"""Packages the project so Beam workers and the pipeline image can import it."""

from setuptools import find_packages, setup

setup(
    name='fakefaces',
    version='0.1.0',
    description='A TFX pipeline that detects GAN-generated faces and gates deployment on fairness.',
    python_requires='>=3.10,<3.11',  # TFX 1.16 supports only <3.11
    packages=find_packages(include=['pipeline', 'pipeline.*', 'components', 'components.*',
                                    'serving', 'serving.*', 'kubeflow', 'kubeflow.*']),
    package_data={'pipeline': ['configs/*.yaml'], 'serving': ['*.config'],
                  'kubeflow': ['manifests/*.yaml', 'manifests/**/*.yaml']},
    # Exact pins live in requirements.txt (TFX 1.16's tested set); these are the
    # direct imports, loose so the package installs into that pinned environment.
    install_requires=[
        'tfx>=1.16,<1.17',
        'tensorflow-model-analysis>=0.47.1,<0.48',
        'tensorflow-serving-api>=2.16,<2.17',
        'tf-keras>=2.16,<2.17',
        'apache-beam>=2.59,<2.60',
        'dlib-bin',
        'face-recognition-models',
        'Pillow',
        'PyYAML',
    ],
    entry_points={'console_scripts': ['fakefaces=fakefaces.pipeline.cli:main']},
)
