# Copyright (c) mmboxseg contributors. All rights reserved.
"""Config helpers: the ``mmboxseg::`` prefix and the ``_scope_`` fix-up.

``mmboxseg::`` prefix
    mmengine 0.10.7 resolves ``_base_ = 'pkg::path'`` only for packages in
    its hard-coded ``MODULE2PACKAGE`` table and locates them with
    ``get_installed_path``, which points into site-packages for a PEP 660
    editable install.  :func:`register_config_prefix` (run by
    ``import mmboxseg``) adds ``mmboxseg`` to that table and teaches the
    path lookup where this package's configs really are, so another project
    can write ``_base_ = 'mmboxseg::boxinst/boxinst_r18_fpn_toy.py'`` once
    ``mmboxseg`` is imported (``custom_imports`` is too late: mmengine
    merges base files before it applies ``custom_imports``).

``_scope_`` fix-up
    Every dict inherited through ``mmdet::`` carries ``_scope_='mmdet'``, and
    that survives when a child config overrides its ``type``, so an mmboxseg
    type there would be looked up in mmdet's registry and not be found.
    mmboxseg's registries are children of mmdet's, so building under the
    ``mmboxseg`` scope finds both; :func:`adopt_mmboxseg_scope` re-scopes
    such dicts.  mmboxseg's own configs also set ``_scope_='mmboxseg'``
    explicitly on the dicts that name mmboxseg types, so they build from
    any project's tools.
"""
import os
import os.path as osp
from typing import Any

MMBOXSEG_SCOPE = 'mmboxseg'
# what setup.py puts into mmboxseg/.mim
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')


def package_root() -> str:
    """Directory of the importable ``mmboxseg`` package."""
    return osp.dirname(osp.dirname(osp.abspath(__file__)))


def ensure_mim_links() -> str:
    """Return ``mmboxseg/.mim``, creating it for an editable install.

    A regular install (``pip install .``) copies ``configs/``, ``tools/``
    and ``model-index.yml`` into ``mmboxseg/.mim`` (see ``setup.py``).  A
    PEP 660 editable install (``pip install -e .`` with setuptools >= 64)
    runs no ``develop`` command, so ``.mim`` may be missing; we then link
    it to the repository, as ``setup.py develop`` would.
    """
    pkg = package_root()
    mim_dir = osp.join(pkg, '.mim')
    if osp.isdir(osp.join(mim_dir, 'configs')):
        return mim_dir
    repo = osp.dirname(pkg)
    if not osp.isdir(osp.join(repo, 'configs')):
        raise FileNotFoundError(
            f'mmboxseg configs not found: {mim_dir}/configs does not exist '
            f'and {repo} is not an mmboxseg source tree. Reinstall mmboxseg '
            '(pip install .) so that its .mim folder is created.')
    os.makedirs(mim_dir, exist_ok=True)
    for item in MIM_ITEMS:
        link = osp.join(mim_dir, item)
        if not osp.lexists(link):
            os.symlink(osp.join('..', '..', item), link)
    return mim_dir


def config_root() -> str:
    """Where mmboxseg's configs are (``mmboxseg/.mim/configs``)."""
    return osp.join(ensure_mim_links(), 'configs')


def register_config_prefix() -> None:
    """Make ``mmboxseg::`` resolvable in ``_base_`` (idempotent)."""
    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils

    config_utils.MODULE2PACKAGE.setdefault(MMBOXSEG_SCOPE, MMBOXSEG_SCOPE)
    original = config_module.get_installed_path
    if getattr(original, '_mmboxseg_wrapped', False):
        return

    def get_installed_path(package: str) -> str:
        # pkg_resources reports site-packages for a PEP 660 editable
        # install, where the package is not; the imported module knows.
        if package == MMBOXSEG_SCOPE:
            ensure_mim_links()
            return package_root()
        return original(package)

    get_installed_path._mmboxseg_wrapped = True
    config_module.get_installed_path = get_installed_path


def adopt_mmboxseg_scope(cfg: Any) -> Any:
    """Re-scope dicts inherited through ``mmdet::`` to ``mmboxseg``, in
    place.

    Safe because mmboxseg's registries are children of mmdet's: every mmdet
    type is still found.  Returns ``cfg`` for chaining.
    """
    from mmengine.config import Config
    if isinstance(cfg, Config):
        adopt_mmboxseg_scope(cfg._cfg_dict)
    elif isinstance(cfg, dict):
        if cfg.get('_scope_') == 'mmdet':
            cfg['_scope_'] = MMBOXSEG_SCOPE
        for value in cfg.values():
            adopt_mmboxseg_scope(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            adopt_mmboxseg_scope(value)
    return cfg
