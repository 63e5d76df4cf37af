# Copyright (c) mmboxseg contributors. All rights reserved.
from typing import List, Optional

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmboxseg.registry import HOOKS, TASK_UTILS

DATA_BATCH = Optional[dict]


@HOOKS.register_module()
class MemoryBankHook(Hook):
    """Builds a memory bank, hands it to the parts of the model that read
    or write it, and keeps it in checkpoints: SIM's image bank
    (:class:`mmboxseg.models.utils.MemoryBank`) or DiscoBox's per-class
    object bank (:class:`mmboxseg.models.utils.ObjectMemoryBank`); any
    ``TASK_UTILS`` class with ``length``, ``seed``, ``generator``,
    ``num_pushed``, ``nbytes()``, ``state_dict()`` and
    ``load_state_dict()`` works.

    Receivers are the objects with a ``memory_bank`` attribute among the
    detector (which pushes images with their pseudo masks, e.g. SIM, or
    object RoIs, DiscoBox), its data preprocessor and the preprocessor's
    ``copy_paste`` transform (which samples from it). A hook that finds
    no receiver raises: the config would silently train without the bank.

    The bank is written to ``checkpoint['memory_bank']`` and restored by
    ``--resume`` only (``load_from`` alone, e.g. fine-tuning on other
    classes, starts empty). It holds tensors, ints and lists only, so
    torch's ``weights_only=True`` loader accepts it. Under distributed
    training every rank keeps its own bank of its own images and draws
    with its own seed (``seed + rank``); checkpoints hold rank 0's bank,
    which every rank gets back on resume (ranks > 0 are re-seeded).

    The bank size is logged as ``memory_bank_size`` with the training logs
    and its memory at the end of training.

    Args:
        bank (dict): Config of the bank (``type='MemoryBank'``).
        save_in_checkpoint (bool): Store the bank in checkpoints. Without
            it a resumed run starts with an empty bank (as the public SIM
            code does).
    """

    priority = 'NORMAL'

    def __init__(self,
                 bank: dict = dict(type='MemoryBank', length=100),
                 save_in_checkpoint: bool = True) -> None:
        self.bank = TASK_UTILS.build(bank)
        # ranks draw different pastes
        self.bank.generator.manual_seed(self.bank.seed + get_rank())
        self.save_in_checkpoint = save_in_checkpoint

    @staticmethod
    def receivers(model) -> List[object]:
        if is_model_wrapper(model):
            model = model.module
        preprocessor = getattr(model, 'data_preprocessor', None)
        candidates = [
            model, preprocessor,
            getattr(preprocessor, 'copy_paste', None)
        ]
        return [
            c for c in candidates
            if c is not None and hasattr(c, 'memory_bank')
        ]

    def before_train(self, runner) -> None:
        receivers = self.receivers(runner.model)
        if not receivers:
            raise ValueError(
                'MemoryBankHook: neither the model, its data preprocessor '
                'nor the preprocessor\'s copy_paste takes a memory bank '
                '(no `memory_bank` attribute); remove the hook or use a '
                'model that fills or reads the bank, e.g. type=\'SIM\'')
        for receiver in receivers:
            receiver.memory_bank = self.bank
            need = getattr(receiver, 'min_bank_size', None)
            if need is not None and need > self.bank.length:
                raise ValueError(
                    f'MemoryBankHook: {type(receiver).__name__} waits for '
                    f'{need} entries but the bank holds {self.bank.length}; '
                    'it would never run')
            most = getattr(self.bank, 'max_retrieval', None)
            if need is not None and most is not None and need > most:
                raise ValueError(
                    f'MemoryBankHook: {type(receiver).__name__} needs '
                    f'{need} retrieved objects but the bank returns at most '
                    f'{most} (max_retrieval); the correspondence loss would '
                    'never run')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        runner.message_hub.update_scalar('train/memory_bank_size',
                                         len(self.bank))

    def after_train(self, runner) -> None:
        print_log(
            f'memory bank: {len(self.bank)}/'
            f"{getattr(self.bank, 'capacity', self.bank.length)} entries, "
            f'{self.bank.nbytes() / 2**20:.1f} MiB, '
            f'{self.bank.num_pushed} pushed',
            logger='current')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.save_in_checkpoint:
            checkpoint['memory_bank'] = self.bank.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # `load_from` without --resume (fine-tuning, possibly on other
        # classes) starts with an empty bank
        if not getattr(runner, '_resume', True):
            return
        if 'memory_bank' in checkpoint:
            self.bank.load_state_dict(checkpoint['memory_bank'])
            if get_rank() > 0:
                self.bank.generator.manual_seed(self.bank.seed + get_rank() +
                                                self.bank.num_pushed)
        elif self.save_in_checkpoint:
            print_log(
                'MemoryBankHook: the checkpoint has no memory_bank; '
                'the bank starts empty',
                logger='current',
                level=30)
