#!/usr/bin/env python
# Copyright (c) mmboxseg contributors. All rights reserved.
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

MIM_ITEMS = ('configs', 'tools', 'model-index.yml')


def readme():
    with open('README.md', encoding='utf-8') as f:
        return f.read()


def get_version():
    scope = {}
    with open(osp.join('mmboxseg', 'version.py')) as f:
        exec(compile(f.read(), 'mmboxseg/version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname):
    """Requirement lines of ``fname``, following ``-r`` includes."""
    reqs = []
    with open(fname) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(
                    osp.join(osp.dirname(fname), line[3:].strip()))
            else:
                reqs.append(line)
    return reqs


def add_mim_extension():
    """Put configs, tools and model-index.yml into ``mmboxseg/.mim``.

    Symlinks for ``setup.py develop`` and PEP 660 editable installs
    (``editable_wheel``), copies for wheels and sdists, so that
    ``mim train mmboxseg`` finds them and ``mmboxseg::`` configs resolve.
    (``mmboxseg.utils.ensure_mim_links`` repeats the linking at run time in
    case an editable install skipped this.)
    """
    if any(cmd in sys.argv for cmd in ('develop', 'editable_wheel')):
        mode = 'symlink'
    elif any(cmd in sys.argv
             for cmd in ('sdist', 'bdist_wheel', 'install', 'build')):
        mode = 'copy'
    else:
        return
    repo = osp.dirname(osp.abspath(__file__))
    mim_path = osp.join(repo, 'mmboxseg', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for item in MIM_ITEMS:
        src = osp.join(repo, item)
        dst = osp.join(mim_path, item)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.join('..', '..', item), dst)
        elif osp.isfile(src):
            shutil.copyfile(src, dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            warnings.warn(f'Cannot copy {src}.')


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmboxseg',
        version=get_version(),
        description='Box-supervised instance segmentation on MMDetection',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='computer vision, instance segmentation, weak supervision',
        packages=find_packages(exclude=('configs', 'tools', 'tests')),
        include_package_data=True,
        package_data={'mmboxseg': ['.mim/**/*', '.mim/*']},
        python_requires='>=3.8',
        license='Apache License 2.0',
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'all': parse_requirements('requirements.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
            'optional': parse_requirements('requirements/optional.txt'),
            'mim': parse_requirements('requirements/mminstall.txt'),
        },
        zip_safe=False)
