"""The restricted unpickler rebuilds data and runs nothing else, whatever
opcodes a pickle uses to call or build objects."""
import builtins
import io
import os
import os.path as osp
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from mmkd_channel.utils import restricted_pickle
from mmkd_channel.utils.restricted_pickle import Inert, collect_replaced


def restricted_loads(data: bytes):
    return restricted_pickle.Unpickler(io.BytesIO(data)).load()


class System:
    """REDUCE: ``os.system(cmd)``."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd, ))


class Import:
    """REDUCE: ``__import__(name)``; the result is then used by others."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return (builtins.__import__, (self.name, ))


class GetAttr:
    """REDUCE: ``getattr(obj, name)``, itself called by :class:`Call`."""

    def __init__(self, obj, name):
        self.obj, self.name = obj, name

    def __reduce__(self):
        return (getattr, (self.obj, self.name))

    def __call__(self, *args):  # pickle only needs it callable
        pass


class Call:
    """REDUCE whose callable is the result of an earlier REDUCE:
    ``getattr(__import__('os'), 'system')(cmd)``."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (GetAttr(Import('os'), 'system'), (self.cmd, ))


class Evil:
    """NEWOBJ + BUILD of a class whose ``__setstate__`` runs code."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce_ex__(self, protocol):
        import copyreg
        return (copyreg.__newobj__, (type(self), ), {'cmd': self.cmd})

    def __setstate__(self, state):
        os.system(state['cmd'])


PAYLOADS = {'reduce': System, 'chained-reduce': Call, 'newobj-build': Evil}


@pytest.mark.parametrize('protocol', range(0, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize('kind', sorted(PAYLOADS))
def test_payloads_stay_inert(tmp_path, kind, protocol):
    marker = tmp_path / 'MARKER'
    data = pickle.dumps(
        {
            'w': [1.5, 'x'],
            'payload': PAYLOADS[kind](f'touch {marker}')
        },
        protocol=protocol)
    with collect_replaced() as replaced:
        out = restricted_loads(data)
    assert not marker.exists(), 'the payload ran'
    assert out['w'] == [1.5, 'x']
    assert isinstance(out['payload'], Inert)
    assert replaced  # the names were recorded for the log
    # calling what came back runs nothing either
    assert isinstance(out['payload']('touch', str(marker)), Inert)
    assert not marker.exists()
    # positive control: plain pickle runs it
    pickle.loads(data)
    assert marker.exists()


@pytest.mark.parametrize(
    'data',
    [
        b"(S'touch MARKER'\nios\nsystem\n.",  # INST (protocol 0)
        b'(cos\nsystem\nX\x0c\x00\x00\x00touch MARKERo.',  # OBJ (protocol 1)
        # NEWOBJ (protocol 2)
        b'\x80\x02cos\nsystem\nX\x0c\x00\x00\x00touch MARKER\x85\x81.',
    ],
    ids=['INST', 'OBJ', 'NEWOBJ'])
def test_hand_written_opcodes(tmp_path, monkeypatch, data):
    monkeypatch.chdir(tmp_path)
    assert isinstance(restricted_loads(data), Inert)
    assert not osp.exists('MARKER')


def test_data_is_rebuilt():
    obj = {
        'sd': OrderedDict(w=torch.arange(6.).view(2, 3), b=torch.ones(2)),
        'param': torch.nn.Parameter(torch.zeros(2)),
        'np': np.arange(4, dtype=np.int16),
        'scalar': np.float64(2.5),
        'misc': (torch.Size([2, 3]), torch.float16, {1, 2}, b'bytes', 3 + 4j)
    }
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    out = torch.load(buf, weights_only=False, pickle_module=restricted_pickle)
    assert torch.equal(out['sd']['w'], obj['sd']['w'])
    assert isinstance(out['sd'], OrderedDict)
    assert isinstance(out['param'], torch.nn.Parameter)
    np.testing.assert_array_equal(out['np'], obj['np'])
    assert out['np'].dtype == np.int16 and out['scalar'] == 2.5
    assert out['misc'] == obj['misc']


def mmengine_getstate(self):
    """What MMEngine's own ``HistoryBuffer.__getstate__`` returns (a host
    process without mmkd_channel): the statistics functions included."""
    self.__dict__.update(statistics_methods=self._statistics_methods)
    return self.__dict__


def test_host_history_buffer_loads_without_touching_the_class(monkeypatch):
    buf = HistoryBuffer()
    buf.update(2.0)
    buf.update(4.0)
    monkeypatch.setattr(HistoryBuffer, '__getstate__', mmengine_getstate)
    data = pickle.dumps({'hub': buf}, protocol=2)
    monkeypatch.undo()
    assert b'getattr' in data  # how plain MMEngine pickles the methods
    methods = dict(HistoryBuffer._statistics_methods)
    with collect_replaced() as replaced:
        out = restricted_loads(data)['hub']
    assert replaced == {'builtins.getattr'}
    assert isinstance(out, HistoryBuffer)
    assert out.mean() == 3.0 and out.current() == 4.0
    # the class-level table still holds the real functions
    assert HistoryBuffer._statistics_methods == methods
