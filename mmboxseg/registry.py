# Copyright (c) mmboxseg contributors. All rights reserved.
"""mmboxseg's registries: children of mmdet's.

A child registry sees every module of its parent, so a config whose default
scope (or ``_scope_``) is ``mmboxseg`` can use mmdet's and mmboxseg's modules
side by side.  The reverse does not hold: mmdet's registries never look into
their children.  Dicts that a config inherits through ``mmdet::`` carry
``_scope_='mmdet'`` and therefore cannot name an mmboxseg type unless their
scope is switched; see :func:`mmboxseg.utils.adopt_mmboxseg_scope`.
"""
from mmdet.registry import DATA_SAMPLERS as MMDET_DATA_SAMPLERS
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmdet.registry import EVALUATOR as MMDET_EVALUATOR
from mmdet.registry import HOOKS as MMDET_HOOKS
from mmdet.registry import LOG_PROCESSORS as MMDET_LOG_PROCESSORS
from mmdet.registry import LOOPS as MMDET_LOOPS
from mmdet.registry import METRICS as MMDET_METRICS
from mmdet.registry import MODEL_WRAPPERS as MMDET_MODEL_WRAPPERS
from mmdet.registry import MODELS as MMDET_MODELS
from mmdet.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMDET_OPTIM_WRAPPER_CONSTRUCTORS
from mmdet.registry import OPTIM_WRAPPERS as MMDET_OPTIM_WRAPPERS
from mmdet.registry import OPTIMIZERS as MMDET_OPTIMIZERS
from mmdet.registry import PARAM_SCHEDULERS as MMDET_PARAM_SCHEDULERS
from mmdet.registry import RUNNER_CONSTRUCTORS as MMDET_RUNNER_CONSTRUCTORS
from mmdet.registry import RUNNERS as MMDET_RUNNERS
from mmdet.registry import TASK_UTILS as MMDET_TASK_UTILS
from mmdet.registry import TRANSFORMS as MMDET_TRANSFORMS
from mmdet.registry import VISBACKENDS as MMDET_VISBACKENDS
from mmdet.registry import VISUALIZERS as MMDET_VISUALIZERS
from mmdet.registry import WEIGHT_INITIALIZERS as MMDET_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

RUNNERS = Registry(
    'runner', parent=MMDET_RUNNERS, locations=['mmboxseg.engine'])
RUNNER_CONSTRUCTORS = Registry(
    'runner constructor',
    parent=MMDET_RUNNER_CONSTRUCTORS,
    locations=['mmboxseg.engine'])
LOOPS = Registry('loop', parent=MMDET_LOOPS, locations=['mmboxseg.engine'])
HOOKS = Registry('hook', parent=MMDET_HOOKS, locations=['mmboxseg.engine'])

DATASETS = Registry(
    'dataset', parent=MMDET_DATASETS, locations=['mmboxseg.datasets'])
DATA_SAMPLERS = Registry(
    'data sampler',
    parent=MMDET_DATA_SAMPLERS,
    locations=['mmboxseg.datasets'])
TRANSFORMS = Registry(
    'transform', parent=MMDET_TRANSFORMS, locations=['mmboxseg.datasets'])

MODELS = Registry('model', parent=MMDET_MODELS, locations=['mmboxseg.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper',
    parent=MMDET_MODEL_WRAPPERS,
    locations=['mmboxseg.models'])
WEIGHT_INITIALIZERS = Registry(
    'weight initializer',
    parent=MMDET_WEIGHT_INITIALIZERS,
    locations=['mmboxseg.models'])

OPTIMIZERS = Registry(
    'optimizer', parent=MMDET_OPTIMIZERS, locations=['mmboxseg.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=MMDET_OPTIM_WRAPPERS,
    locations=['mmboxseg.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMDET_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['mmboxseg.engine'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler',
    parent=MMDET_PARAM_SCHEDULERS,
    locations=['mmboxseg.engine'])

METRICS = Registry(
    'metric', parent=MMDET_METRICS, locations=['mmboxseg.evaluation'])
EVALUATOR = Registry(
    'evaluator', parent=MMDET_EVALUATOR, locations=['mmboxseg.evaluation'])

TASK_UTILS = Registry(
    'task util', parent=MMDET_TASK_UTILS, locations=['mmboxseg.models'])

VISUALIZERS = Registry(
    'visualizer', parent=MMDET_VISUALIZERS, locations=['mmboxseg.engine'])
VISBACKENDS = Registry(
    'vis_backend', parent=MMDET_VISBACKENDS, locations=['mmboxseg.engine'])
LOG_PROCESSORS = Registry(
    'log_processor',
    parent=MMDET_LOG_PROCESSORS,
    locations=['mmboxseg.engine'])
