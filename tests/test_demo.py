"""The main job runs end to end (``--quick``) and prints its summary."""
import json
import math
import os
import os.path as osp
import re
import subprocess
import sys

import pytest


def test_demo_quick_prints_three_finite_accuracies(repo_root, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='2')
    proc = subprocess.run([
        sys.executable,
        osp.join('tools', 'demo.py'), '--quick', '--work-dir',
        str(tmp_path)
    ],
                          cwd=repo_root,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    rows = re.findall(
        r'^(teacher  ResNet-18|student  MobileNetV1 [\d.]+x(?: \+ CWT)?)'
        r'\s+([-\d.naif]+)(?:\s+([+-][\d.]+))?\s*$', out, re.M)
    roles = [r[0].split()[0] for r in rows]
    assert roles == ['teacher', 'student', 'student']
    accs = [float(r[1]) for r in rows]
    assert all(math.isfinite(a) and 0 <= a <= 100 for a in accs)
    assert rows[2][2]  # the CWT row shows its gain
    assert re.search(r'\(digits: \d+ train images, .* [\d.]+ min\)', out)
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['gain'] == pytest.approx(summary['cwt'] - summary['plain'])
