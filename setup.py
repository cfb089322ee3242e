"""Packaging for mmkd_channel: feature knowledge distillation for OpenMMLab."""
import os.path as osp
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def get_version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'mmkd_channel', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmkd_channel',
    version=get_version(),
    description='Channel-wise feature knowledge distillation for '
    'mmdet, mmseg and mmpretrain',
    long_description=open(osp.join(HERE, 'README.md')).read() if osp.exists(
        osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache License 2.0',
    packages=find_packages(exclude=('tests', 'tests.*')),
    include_package_data=True,
    # What `mim` reads, as mmdet ships it: mmkd_channel/.mim/{configs,
    # tools,model-index.yml} are links to the repository's folders in a
    # source checkout (editable install) and copies in a built wheel.
    package_data={'mmkd_channel': ['.mim/**/*']},
    exclude_package_data={
        'mmkd_channel': ['.mim/**/__pycache__/*', '.mim/**/*.pyc']
    },
    python_requires='>=3.8',
    # Ranges only; nothing is asserted at import time.
    install_requires=[
        'torch>=2.0',
        'mmengine>=0.10.0,<1.0',
        'mmcv>=2.0.0rc4,<2.2.0',
        'numpy',
    ],
    extras_require={
        'mmdet': ['mmdet>=3.0.0,<3.4.0'],
        'mmseg': ['mmsegmentation>=1.0.0,<1.3.0', 'ftfy', 'regex'],
        'mmpretrain':
        ['mmpretrain>=1.0.0,<1.3.0', 'mat4py', 'modelindex', 'einops'],
        'tests': ['pytest', 'scikit-learn'],
    },
    zip_safe=False,
)
