# Copyright (c) mmboxseg contributors. All rights reserved.
"""Check a config's keys against the classes it names, before building.

A misspelt key (``model.mask_head.pairwise_sze=3``) otherwise surfaces as
``CondInstMaskHead.__init__() got an unexpected keyword argument`` from
deep inside the registry, under a long traceback and naming a base class
the user never wrote. :func:`check_config_keys` walks the model, data set,
pipeline, hook and evaluator dicts, resolves each ``type`` in mmboxseg's
registries (children of mmdet's, so mmdet's and mmengine's types resolve
too) and compares the dict's keys with the arguments the class accepts:
the named ``__init__`` arguments along its MRO for as long as each
``__init__`` forwards ``**kwargs`` to the next one.

A type that does not resolve, or whose arguments cannot be known (a
``**kwargs`` that is not forwarded, a function), is left to the registry.
"""
import ast
import difflib
import inspect
import textwrap
from typing import Any, List, Optional, Sequence

from torch import nn

# dicts that mmcv/mmdet interpret themselves rather than build with their
# keys as arguments (build_norm_layer pops requires_grad, nms cfgs are
# read by batched_nms, init_cfg by the initialisers)
NOT_BUILT_FROM_KEYS = frozenset(
    ('norm_cfg', 'act_cfg', 'conv_cfg', 'dcn', 'init_cfg', 'upsample_cfg',
     'plugins', 'nms', 'dcn_cfg', 'norm_layer'))


class ConfigKeyError(TypeError):
    """A config dict has a key that its class does not accept."""


def _init_arguments(obj: Any) -> Optional[List[str]]:
    """Named keyword arguments ``obj(**kwargs)`` accepts, or None when any
    keyword may be accepted."""
    if not inspect.isclass(obj):
        try:
            params = inspect.signature(obj).parameters.values()
        except (TypeError, ValueError):
            return None
        if any(p.kind is p.VAR_KEYWORD for p in params):
            return None
        return [
            p.name for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
    names = []
    for klass in obj.__mro__:
        if klass in (object, nn.Module):
            return sorted(set(names))  # both refuse unknown keywords
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        try:
            params = list(inspect.signature(init).parameters.values())[1:]
        except (TypeError, ValueError):
            return None
        names += [
            p.name for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return sorted(set(names))
        if not _forwards_kwargs(init):
            return None
    return None


def _forwards_kwargs(init) -> bool:
    """Whether an ``__init__`` with ``**name`` passes ``**name`` on to
    ``super().__init__(...)`` (then the next class in the MRO decides)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    except (OSError, TypeError, SyntaxError):
        return False
    var_kw = next(
        p.name for p in inspect.signature(init).parameters.values()
        if p.kind is p.VAR_KEYWORD)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == '__init__'
                and isinstance(node.func.value, ast.Call)
                and isinstance(node.func.value.func, ast.Name)
                and node.func.value.func.id == 'super'):
            if any(
                    kw.arg is None and isinstance(kw.value, ast.Name)
                    and kw.value.id == var_kw for kw in node.keywords):
                return True
    return False


def _resolve(type_name: Any, registries: Sequence) -> Any:
    if not isinstance(type_name, str):
        return type_name if callable(type_name) else None
    for registry in registries:
        found = registry.get(type_name)
        if found is not None:
            return found
    return None


def _registries_for(key: str) -> list:
    from mmboxseg import registry as r
    by_key = {
        'pipeline': [r.TRANSFORMS],
        'transforms': [r.TRANSFORMS],
        'dataset': [r.DATASETS],
        'datasets': [r.DATASETS],
        'custom_hooks': [r.HOOKS],
        'val_evaluator': [r.METRICS],
        'test_evaluator': [r.METRICS],
        'metrics': [r.METRICS],
    }
    return by_key.get(key, [r.MODELS, r.TASK_UTILS])


def _check(node: Any, key_path: str, registries: list, source: str) -> None:
    if isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            _check(item, f'{key_path}[{i}]', registries, source)
        return
    if not isinstance(node, dict):
        return
    if 'type' in node:
        cls = _resolve(node['type'], registries)
        accepted = _init_arguments(cls) if cls is not None else None
        if accepted is not None:
            for key in node:
                if key in ('type', '_scope_') or key in accepted:
                    continue
                type_name = node['type'] if isinstance(
                    node['type'], str) else node['type'].__name__
                near = difflib.get_close_matches(key, accepted, n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ''
                raise ConfigKeyError(
                    f'{source}: {key_path}.{key}: {type_name} has no '
                    f"argument '{key}'{hint} (valid: "
                    f'{", ".join(sorted(accepted))})')
    for key, value in node.items():
        if key in ('type', '_scope_') or key in NOT_BUILT_FROM_KEYS:
            continue
        _check(value, f'{key_path}.{key}', _registries_for(key), source)


def check_config_keys(cfg: Any, source: str = 'config') -> None:
    """Raise :class:`ConfigKeyError` for the first key of ``cfg`` that the
    class it configures does not accept.

    Args:
        cfg (Config | dict): A merged config.
        source (str): The config file, named in the error.
    """
    from mmengine import DefaultScope

    sections = {
        'model': 'model',
        'train_dataloader': 'dataset',
        'val_dataloader': 'dataset',
        'test_dataloader': 'dataset',
        'custom_hooks': 'custom_hooks',
        'val_evaluator': 'val_evaluator',
        'test_evaluator': 'test_evaluator',
    }
    with DefaultScope.overwrite_default_scope('mmboxseg'):
        for section, kind in sections.items():
            node = cfg.get(section)
            if node is None:
                continue
            if section.endswith('_dataloader'):
                _check(
                    node.get('dataset'), f'{section}.dataset',
                    _registries_for(kind), source)
            else:
                _check(node, section, _registries_for(kind), source)


def load_config(path: str, cfg_options: Optional[dict] = None) -> Any:
    """What mmboxseg's tools do with a config file: read it, merge the
    ``--cfg-options``, re-scope dicts inherited through ``mmdet::``
    (:func:`~mmboxseg.utils.adopt_mmboxseg_scope`) and check its keys.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigKeyError: A key its class does not accept.
    """
    from mmengine.config import Config

    from .config_utils import adopt_mmboxseg_scope
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    adopt_mmboxseg_scope(cfg)
    check_config_keys(cfg, path)
    return cfg
