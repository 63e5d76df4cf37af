# Copyright (c) mmboxseg contributors. All rights reserved.
from ..conftest import load_tool


def test_memory_bank_size_counts_the_full_bank():
    tool = load_tool('tools/analysis_tools/memory_bank_size.py',
                     'memory_bank_size')
    out = tool.measure((64, 40), instances=3, length=5, max_instances=2)
    # 5 entries of a 3x64x40 image and 2 kept masks of 16x10 (uint8),
    # 2 boxes (float32), labels (int64) and scores (float32)
    per_entry = 3 * 64 * 40 + 2 * 16 * 10 + 2 * (16 + 8 + 4)
    assert out['length'] == 5
    assert out['nbytes'] == 5 * per_entry
    assert out['bound_bytes'] >= out['nbytes']
