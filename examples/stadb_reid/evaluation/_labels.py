"""The gallery grouped by identity, and which queries have a correct match (shared by both protocols).

Under both protocols a gallery entry with the query's identity and camera is junk, and a correct match
is a gallery entry with the query's identity seen by another camera. :class:`LabelIndex` precomputes,
once per evaluation, where each query's identity lies in the gallery and how many correct matches it
has, so that the chunk kernels only gather.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._inputs import IntArray

__all__ = ["LabelIndex"]


@dataclass(frozen=True)
class LabelIndex:
    """Identities and cameras of one evaluation, grouped for the chunk kernels.

    Attributes:
        q_pids: ``(num_query,)`` query identities.
        g_pids: ``(num_gallery,)`` gallery identities.
        q_camids: ``(num_query,)`` query cameras.
        g_camids: ``(num_gallery,)`` gallery cameras.
        g_order: Gallery indices sorted by ``(identity, index)``.
        id_values: The distinct gallery identities, ascending.
        id_count: Gallery entries of each identity of ``id_values``.
        g_code: Position of each gallery entry's identity in ``id_values``.
        q_code: Position of each query's identity in ``id_values``; -1 if absent from the gallery.
        q_group_start: Where each query's identity starts in ``g_order`` (0 if absent).
        q_group_len: Gallery entries with each query's identity (0 if absent).
        num_positives: Correct matches of each query (its identity, another camera).
        valid: Indices of the queries with at least one correct match, ascending.

    Examples:
        >>> index = LabelIndex.build(*(np.array(a) for a in ([1, 2], [1, 2, 1], [0, 0], [1, 0, 0])))
        >>> index.num_positives.tolist(), index.valid.tolist()
        ([1, 0], [0])
    """

    q_pids: IntArray
    g_pids: IntArray
    q_camids: IntArray
    g_camids: IntArray
    g_order: IntArray
    id_values: IntArray
    id_count: IntArray
    g_code: IntArray
    q_code: IntArray
    q_group_start: IntArray
    q_group_len: IntArray
    num_positives: IntArray
    valid: IntArray

    @classmethod
    def build(cls, q_pids: IntArray, g_pids: IntArray, q_camids: IntArray, g_camids: IntArray) -> LabelIndex:
        """Group the gallery by identity and count every query's correct matches.

        Args:
            q_pids: ``(num_query,)`` int64 query identities.
            g_pids: ``(num_gallery,)`` int64 gallery identities.
            q_camids: ``(num_query,)`` int64 query cameras.
            g_camids: ``(num_gallery,)`` int64 gallery cameras.

        Returns:
            The index.
        """
        g_order = np.argsort(g_pids, kind="stable")
        id_values, id_start, id_count = np.unique(g_pids[g_order], return_index=True, return_counts=True)
        loc = np.minimum(np.searchsorted(id_values, q_pids), len(id_values) - 1)
        found = id_values[loc] == q_pids
        q_code = np.where(found, loc, -1)
        q_group_len = np.where(found, id_count[loc], 0)
        # Junk count per query: gallery entries with the query's (pid, camera).
        cams = np.unique(np.concatenate([q_camids, g_camids]))
        n_cams = len(cams)
        g_key = np.searchsorted(id_values, g_pids) * n_cams + np.searchsorted(cams, g_camids)
        keys, key_count = np.unique(g_key, return_counts=True)
        q_key = np.maximum(q_code, 0) * n_cams + np.searchsorted(cams, q_camids)
        kloc = np.minimum(np.searchsorted(keys, q_key), len(keys) - 1)
        junk = np.where(found & (keys[kloc] == q_key), key_count[kloc], 0)
        num_positives = q_group_len - junk
        return cls(
            q_pids=q_pids,
            g_pids=g_pids,
            q_camids=q_camids,
            g_camids=g_camids,
            g_order=g_order,
            id_values=id_values,
            id_count=id_count,
            g_code=np.searchsorted(id_values, g_pids),
            q_code=q_code,
            q_group_start=np.where(found, id_start[loc], 0),
            q_group_len=q_group_len,
            num_positives=num_positives,
            valid=np.flatnonzero(num_positives > 0),
        )
