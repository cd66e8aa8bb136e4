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


def test_group_partition_matches_scipy_components_of_couplings_and_spaces():
    """Groups are the components of the couplings plus an edge from every atom to its space's first atom."""
    rng = np.random.default_rng(1)
    for _ in range(100):
        store = ChannelStore()
        spaces = [store.new_space(int(rng.integers(0, 6)), f"s{i}") for i in range(int(rng.integers(1, 12)))]
        n = store.n_atoms
        for _ in range(int(rng.integers(0, 8)) if n else 0):
            k = int(rng.integers(0, 5))
            store.couple(rng.integers(0, n, k), rng.integers(0, n, k))
        chan, grp = store.partitions()
        src = np.concatenate([a for a, _ in store._couplings] + [np.arange(n)])
        dst = np.concatenate([b for _, b in store._couplings] + [np.full(len(s), s[0] if len(s) else 0)
                                                                   for s in spaces])
        _, comp = connected_components(coo_matrix((np.ones(len(src)), (src, dst)), shape=(n, n)), directed=False)
        smallest = np.full(comp.max() + 1 if n else 0, n)
        np.minimum.at(smallest, comp, np.arange(n))
        np.testing.assert_array_equal(grp, smallest[comp])
        assert grp.dtype == chan.dtype == np.int64
