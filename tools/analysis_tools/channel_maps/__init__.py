"""The parts of ``visualize_channels.py``, by concern.

* :mod:`.model_data`: build the distiller, run one image through the host's
  test pipeline and record the pair's features, as training would;
* :mod:`.features`: per-feature helpers (levels, shapes, channel energy,
  correlations, CWD's spatial softmax);
* :mod:`.panels`: what each panel of the figure shows, for spatial maps
  and for per-channel values;
* :mod:`.drawing`: the matplotlib figures.

The script keeps the command line; the parts are here so that each can be
read (and tested) without the others.
"""
