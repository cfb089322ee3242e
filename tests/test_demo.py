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

    # both checkpoints are kept, and the printed commands run as printed
    for role in ('teacher', 'distilled student'):
        path = re.search(rf'^{role} checkpoint: +(\S+)$', out, re.M).group(1)
        assert osp.isfile(osp.join(repo_root, path)), path
    commands = re.findall(r'^  (python tools/\S+\.py .*)$', out, re.M)
    assert [c.split()[1] for c in commands] == [
        'tools/model_converters/export_student.py',
        'tools/analysis_tools/visualize_channels.py'
    ]
    for command in commands:
        done = subprocess.run(
            [sys.executable] + command.split()[1:],
            cwd=repo_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300)
        assert done.returncode == 0, (command, done.stderr[-3000:])
    assert (tmp_path / 'student.pth').is_file()
    assert (tmp_path / 'student.py').is_file()
    assert (tmp_path / 'channels.png').is_file()
