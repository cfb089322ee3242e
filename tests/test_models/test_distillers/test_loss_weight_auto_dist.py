"""Two CPU processes (gloo) calibrate ``loss_weight='auto'`` on different
batches and end with the same weight: the one the rank-averaged statistics
give."""
import json
import os
import os.path as osp
import socket
import statistics
import subprocess
import sys

import pytest

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(osp.dirname(HERE)))

WORKER = r'''
import json, os, sys
import torch
sys.path[:0] = [os.path.join(sys.argv[2], 'tests', *p) for p in
                ((), ('test_models', 'test_distillers'))]
import torch.distributed as dist
from test_loss_weight_auto import distiller
dist.init_process_group('gloo')  # env:// from torchrun; CPU only
rank = dist.get_rank()
g = torch.Generator().manual_seed(100 + rank)
steps = [(torch.rand(2, 3, 16, 16, generator=g) * (1 + 3 * rank),
          [rank, 2]) for _ in range(3)]
out = {}
for name, weight in (('raw', 1.0), ('auto', 'auto')):
    model = distiller(weight, None if weight == 1.0 else
                      dict(iters=3, target_ratio=0.5))
    model.train()
    with torch.no_grad():
        out[name] = [{k: float(v) for k, v in model(x, y, mode='loss').items()}
                     for x, y in steps]
out['weight'] = model.loss_weight_calibration.weights()['f']
with open(os.path.join(sys.argv[1], f'rank{rank}.json'), 'w') as f:
    json.dump(out, f)
dist.destroy_process_group()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_ranks_agree_on_the_rank_averaged_weight(tmp_path):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join([REPO, osp.join(REPO, 'tests')] + (
        [env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    proc = subprocess.run([
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        f'--master_port={free_port()}',
        str(script),
        str(tmp_path), REPO
    ],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    ranks = [
        json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1)
    ]
    assert ranks[0]['weight'] == ranks[1]['weight']

    def mean_over_ranks(key):
        return [(a[key] + b[key]) / 2
                for a, b in zip(ranks[0]['raw'], ranks[1]['raw'])]

    task = mean_over_ranks('loss_cls')
    raw = mean_over_ranks('loss_distill_f')
    expected = 0.5 * statistics.median(task) / statistics.median(raw)
    assert ranks[0]['weight'] == pytest.approx(expected, rel=1e-6)
    # each rank alone would have chosen another weight
    for r in ranks:
        alone = 0.5 * statistics.median(s['loss_cls']
                                        for s in r['raw']) / statistics.median(
                                            s['loss_distill_f']
                                            for s in r['raw'])
        assert alone != pytest.approx(expected, rel=1e-2)
