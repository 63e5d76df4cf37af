# Copyright (c) mmboxseg contributors. All rights reserved.
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Register mmdet's and mmboxseg's modules in their registries.

    Args:
        init_default_scope (bool): Whether to set the default scope to
            ``mmboxseg``, so that registries resolve mmboxseg's modules first
            and fall back to mmdet's (mmboxseg's registries are children of
            mmdet's).  Defaults to True.
    """
    from mmdet.utils import register_all_modules as mmdet_register_all
    mmdet_register_all(init_default_scope=False)

    import mmboxseg.datasets  # noqa: F401,F403
    import mmboxseg.engine  # noqa: F401,F403
    import mmboxseg.evaluation  # noqa: F401,F403
    import mmboxseg.models  # noqa: F401,F403

    if init_default_scope:
        never_created = DefaultScope.get_current_instance() is None \
            or not DefaultScope.check_instance_created('mmboxseg')
        if never_created:
            DefaultScope.get_instance('mmboxseg', scope_name='mmboxseg')
            return
        current_scope = DefaultScope.get_current_instance()
        if current_scope.scope_name != 'mmboxseg':
            warnings.warn('The current default scope '
                          f'"{current_scope.scope_name}" is not "mmboxseg", '
                          '`register_all_modules` will force the current'
                          'default scope to be "mmboxseg". If this is not '
                          'expected, please set `init_default_scope=False`.')
            # avoid name conflict
            new_instance_name = f'mmboxseg-{datetime.datetime.now()}'
            DefaultScope.get_instance(new_instance_name, scope_name='mmboxseg')
