"""Teacher checkpoints from URLs: each node's first process downloads, the
others wait; failures name the key, the URL and the HTTP status.

The "nodes" are processes with their own ``TORCH_HOME`` (a per-node hub
cache) and ``LOCAL_RANK=0`` each, in one gloo group on this machine; the
file is served by a local ``http.server``.
"""
import http.server
import os
import os.path as osp
import subprocess
import sys
import textwrap
import threading

import pytest
import torch
from mmkd_toy import free_port, subprocess_env

from mmkd_channel.utils import CheckpointDownloadError, load_teacher_checkpoint

SCRIPT = textwrap.dedent('''
    import os, sys
    import torch.distributed as dist
    import mmkd_channel  # noqa: F401
    from mmkd_toy import MMKDToyNet
    from mmkd_channel.utils import load_teacher_checkpoint
    dist.init_process_group('gloo', init_method='env://',
                            rank=int(os.environ['RANK']), world_size=2)
    model = MMKDToyNet(width=16)
    try:
        load_teacher_checkpoint(model, sys.argv[1])
    except Exception as e:
        print(f'ERROR {type(e).__name__}: {e}', flush=True)
        code = 3
    else:
        print('LOADED', float(model.head.weight.detach().sum()), flush=True)
        code = 0
    # leaving with the group alive lets gloo's threads be torn down during
    # interpreter exit, which now and then aborts (SIGABRT) the store's host
    dist.destroy_process_group()
    sys.exit(code)
''')


class Server:
    """Serves ``files`` (name -> bytes) on localhost; counts GETs."""

    def __init__(self, files: dict) -> None:
        self.gets = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):

            def do_GET(self):
                outer.gets.append(self.path)
                data = files.get(self.path.lstrip('/'))
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def teacher_file(tmp_path):
    from mmkd_toy import MMKDToyNet
    model = MMKDToyNet(width=16)
    path = tmp_path / 'teacher.pth'
    torch.save({'state_dict': model.state_dict()}, path)
    server = Server({'teacher.pth': path.read_bytes()})
    yield server, model
    server.close()


def run_two(tmp_path, url: str, local_ranks, homes) -> list:
    port = free_port()
    script = tmp_path / 'load.py'
    script.write_text(SCRIPT)
    procs = []
    for rank in (0, 1):
        env = subprocess_env()
        env.update(
            RANK=str(rank),
            WORLD_SIZE='2',
            LOCAL_RANK=str(local_ranks[rank]),
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=str(port),
            TORCH_HOME=str(homes[rank]))
        procs.append(
            subprocess.Popen([sys.executable, str(script), url],
                             env=env,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             text=True))
    return [(p.wait(timeout=240), p.stdout.read() + p.stderr.read())
            for p in procs]


def cached(home) -> str:
    return osp.join(str(home), 'hub', 'checkpoints', 'teacher.pth')


def test_each_node_downloads_once(teacher_file, tmp_path):
    server, model = teacher_file
    homes = [tmp_path / 'node0', tmp_path / 'node1']
    results = run_two(tmp_path, f'{server.url}/teacher.pth', [0, 0], homes)
    expected = float(model.head.weight.detach().sum())
    for rc, out in results:
        assert rc == 0, out[-3000:]
        assert f'LOADED {expected}' in out
    assert osp.isfile(cached(homes[0])) and osp.isfile(cached(homes[1]))
    assert server.gets == ['/teacher.pth'] * 2  # once per node


def test_one_node_downloads_once(teacher_file, tmp_path):
    """Two processes of one node: local rank 1 waits and reads."""
    server, _ = teacher_file
    home = tmp_path / 'node'
    results = run_two(tmp_path, f'{server.url}/teacher.pth', [0, 1],
                      [home, home])
    for rc, out in results:
        assert rc == 0, out[-3000:]
    assert server.gets == ['/teacher.pth']
    assert os.listdir(osp.dirname(cached(home))) == ['teacher.pth']


def test_404_names_key_url_status_and_other_ranks_say_who(
        teacher_file, tmp_path):
    server, _ = teacher_file
    url = f'{server.url}/missing.pth'
    home = tmp_path / 'node'
    (rc0, out0), (rc1, out1) = run_two(tmp_path, url, [0, 1], [home, home])
    assert rc0 == 3 and rc1 == 3, out0 + out1
    assert 'ERROR CheckpointDownloadError: teacher_ckpt' in out0
    assert url in out0 and 'HTTP 404' in out0
    (error1, ) = [line for line in out1.splitlines() if 'ERROR' in line]
    assert 'rank(s) [0] failed to fetch it' in error1 and url in error1
    assert 'gloo' not in error1.lower()
    assert not osp.exists(cached(home))  # no partial file left


def test_unreachable_server(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    url = f'http://127.0.0.1:{free_port()}/teacher.pth'  # nobody listens
    from mmkd_toy import MMKDToyNet
    with pytest.raises(CheckpointDownloadError) as e:
        load_teacher_checkpoint(MMKDToyNet(width=16), url)
    msg = str(e.value)
    assert msg.startswith('teacher_ckpt') and url in msg
    assert 'unreachable' in msg
