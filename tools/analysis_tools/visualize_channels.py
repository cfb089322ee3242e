"""Draw what channel-wise distillation aligns, channel by channel.

For one distilled pair of a :class:`mmkd_channel.FeatureDistiller` config,
one image goes through the host's test pipeline and both models; the
figure shows, for the top-k teacher channels (by mean activation energy
``mean(t_c ** 2)``), one row each:

* the teacher map (what the loss compares against: after the
  ``teacher_connector`` when there is one, e.g. OFD's margin ReLU);
* the raw student map: the same channel when the channel counts agree,
  otherwise the student channel most correlated with that teacher channel
  (the title says so and gives Pearson's r);
* the transformed student map: the connector's output (CWT's MLP), the
  map the loss compares with the teacher's;
* for ``ChannelWiseDivergence`` (CWD) losses, also the per-channel spatial
  softmax ``softmax(x_c / tau)`` of teacher and transformed student, the
  distributions whose KL divergence is the loss.

Example::

    python tools/analysis_tools/visualize_channels.py \\
        configs/cwt/cwt_fpn_faster-rcnn_r101_faster-rcnn_r50_8xb2-2x_coco.py \\
        --checkpoint work_dirs/cwt_frcnn.../epoch_24.pth \\
        --img demo.jpg --out channels.png --level 1 --topk 4

Every map has its own colour scale (its own range is in its title);
``--shared-scale`` puts the teacher and the student maps the loss compares
on one scale per row instead.

Features without a spatial extent, 1x1 maps (a classifier's last stage on
small inputs) and pooled ``(N, C)`` vectors, are drawn as per-channel
values instead: grouped bars of teacher and student for the top-k teacher
channels (by ``|t_c|``) and a scatter of student against teacher values
over all channels, with the line ``student = teacher``.

Without ``--checkpoint`` the student and connectors keep their
initialisation (useful to see what the untrained connector does); add
``--cfg-options model.teacher_ckpt=None`` to skip the teacher download.

The drawing and the data gathering live in ``channel_maps/`` beside this
script; their functions are importable from here as before.
"""
import argparse
import os.path as osp
import sys
from typing import Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import MMLogger
from mmengine.runner import set_random_seed

import mmkd_channel  # noqa: F401  (registers modules and safe loaders)

HERE = osp.dirname(osp.abspath(__file__))
if HERE not in sys.path:  # channel_maps, also when imported by the tests
    sys.path.insert(0, HERE)

# isort would move each noqa off the first line of its import
# isort: off
from channel_maps.drawing import draw, draw_vectors, header_lines  # noqa: E402
from channel_maps.features import (  # noqa: E402
    as_vector, best_correlated, channel_energy, describe, is_map, pearson,
    pick_level, spatial_softmax)
from channel_maps.model_data import (  # noqa: E402
    build_distiller, find_pipeline, load_batch, read_rgb, record_features)
from channel_maps.panels import (  # noqa: E402
    channel_rows, channel_values, connector_name, pair_facts)
# isort: on

__all__ = [
    'parse_args',
    'main',
    'build_distiller',
    'find_pipeline',
    'load_batch',
    'record_features',
    'read_rgb',
    'pick_level',
    'is_map',
    'as_vector',
    'channel_energy',
    'best_correlated',
    'spatial_softmax',
    'describe',
    'pearson',
    'channel_rows',
    'pair_facts',
    'connector_name',
    'channel_values',
    'header_lines',
    'draw_vectors',
    'draw',
]

LOGGER_NAME = 'mmkd_channel'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command line of the tool (``argv=None``: ``sys.argv``)."""
    parser = argparse.ArgumentParser(
        description='Draw teacher, raw student and transformed student '
        'feature maps of the top-k teacher channels of a distilled pair')
    parser.add_argument('config', help='distillation config file')
    parser.add_argument(
        '--checkpoint',
        help='training checkpoint of the distiller (student and '
        'connectors); the teacher comes from model.teacher_ckpt')
    parser.add_argument('--img', required=True, help='input image file')
    parser.add_argument('--out', required=True, help='output PNG file')
    parser.add_argument(
        '--pair',
        help='name of the distill term (a key of model.distill); default: '
        'the first one')
    parser.add_argument(
        '--level',
        type=int,
        default=0,
        help='feature level for tuple features such as FPN outputs')
    parser.add_argument(
        '--topk',
        type=int,
        default=None,
        help='number of teacher channels (default: 4 maps, or 24 bars for '
        '1x1 / pooled features)')
    parser.add_argument(
        '--shared-scale',
        action='store_true',
        help='one colour scale per row for the teacher and the student '
        'maps the loss compares (default: every map its own scale)')
    parser.add_argument(
        '--device', default='cpu', help='device, e.g. cpu or cuda:0')
    parser.add_argument('--dpi', type=int, default=100, help='figure dpi')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='random seed (initialisation of anything not loaded from a '
        'checkpoint)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs, e.g. '
        'model.teacher_ckpt=None')
    args = parser.parse_args(argv)
    if args.topk is not None and args.topk < 1:
        parser.error('--topk must be >= 1')
    return args


def main(argv: Optional[Sequence[str]] = None) -> str:
    """Run the tool; returns the path of the written PNG."""
    args = parse_args(argv)
    logger = MMLogger.get_instance(LOGGER_NAME)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if not isinstance(cfg.get('model'), (dict, ConfigDict)):
        raise KeyError(f'{args.config} defines no model')
    set_random_seed(args.seed)
    model = build_distiller(cfg, args.checkpoint, args.device)
    pairs = model.distill_pairs
    name = args.pair if args.pair is not None else next(iter(pairs))
    if name not in pairs:
        raise KeyError(f'--pair {name!r}: the config distills '
                       f'{list(pairs)}')
    pair = pairs[name]
    batch = load_batch(model, cfg, args.img)
    batch['inputs'] = batch['inputs'].to(args.device)
    logger.info(f'input {tuple(batch["inputs"].shape)}; recording '
                f"'{pair.student_path}' (student) and "
                f"'{pair.teacher_path}' (teacher)")
    s_out, t_out = record_features(model, batch)
    s_feat, t_feat = s_out[pair.student_path], t_out[pair.teacher_path]
    vectors = (
        as_vector(pick_level(t_feat, args.level, 'teacher')) is not None
        and as_vector(pick_level(s_feat, args.level, 'student')) is not None)
    if vectors:
        values, facts = channel_values(pair, s_feat, t_feat, args.level)
    else:
        topk = args.topk or 4
        rows, facts = channel_rows(pair, s_feat, t_feat, args.level, topk)
    try:
        with torch.no_grad():
            loss_value = float(pair(s_feat, t_feat, batch['data_samples']))
    except Exception as e:  # e.g. a loss needing labels the image lacks
        logger.warning(f'loss not evaluated on this image: {e}')
        loss_value = None
    out_dir = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(out_dir):
        raise FileNotFoundError(f'--out: directory {out_dir} does not exist')
    if vectors:
        draw_vectors(
            values,
            facts,
            read_rgb(args.img),
            args.out,
            title=osp.basename(args.config),
            topk=args.topk or 24,
            dpi=args.dpi,
            loss_value=loss_value)
    else:
        draw(
            rows,
            facts,
            read_rgb(args.img),
            args.out,
            title=osp.basename(args.config),
            dpi=args.dpi,
            loss_value=loss_value,
            shared_scale=args.shared_scale)
    logger.info(f'wrote {args.out}')
    return args.out


if __name__ == '__main__':
    main()
