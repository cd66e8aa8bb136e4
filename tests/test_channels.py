"""Channel partitions: the numpy connected-components routine against scipy's."""

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from onnxprune.graph.channels import ChannelStore, _min_labels


def test_min_labels_match_scipy_components():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, m = int(rng.integers(1, 300)), int(rng.integers(0, 400))
        src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
        _, comp = connected_components(coo_matrix((np.ones(m), (src, dst)), shape=(n, n)), directed=False)
        smallest = np.full(comp.max() + 1, n)
        np.minimum.at(smallest, comp, np.arange(n))
        np.testing.assert_array_equal(_min_labels(n, src, dst), smallest[comp])


def test_spaces_share_a_group_but_not_channels():
    store = ChannelStore()
    a, b, c = store.new_space(3, "a"), store.new_space(3, "b"), store.new_space(2, "c")
    store.couple(a, b)  # residual add
    chan, grp = store.partitions()
    np.testing.assert_array_equal(chan[b], a)
    assert len(set(chan[a].tolist())) == 3
    assert set(grp[a].tolist()) == set(grp[b].tolist()) == {0}
    assert set(grp[c].tolist()) == {6}
