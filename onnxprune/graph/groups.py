"""The analysis driver: run every node's rule, then collect atoms into channel groups."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxprune.graph import optable
from onnxprune.graph.channels import ChannelStore
from onnxprune.graph.context import Dim, NodeContext, ParamMember, Rewrite, RuleUnsupported


@dataclass
class Group:
    """Channels that must be removed together, index-aligned: class k is one removable channel."""

    id: int
    name: str  # the first producer's node name
    classes: np.ndarray  # chan-root atom of each channel
    frozen: list[str] = field(default_factory=list)
    producers: list[ParamMember] = field(default_factory=list)
    params: list[ParamMember] = field(default_factory=list)
    dims: list[tuple[ir.Value, Dim]] = field(default_factory=list)
    # Grouped convs: each [n_blocks, per_block] array of class indices must lose equal counts per row.
    blocks: list[np.ndarray] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.classes)

    @property
    def prunable(self) -> bool:
        return not self.frozen and self.size > 1

    def details(self) -> str:
        """A readable account of the group: what it holds and why it is frozen, if it is."""
        lines = [f"group {self.id} '{self.name}': {self.size} channels" + (" (frozen)" if self.frozen else "")]
        for reason in self.frozen:
            lines.append(f"  frozen: {reason}")
        for b in self.blocks:
            lines.append(f"  {b.size} channels balanced over {len(b)} conv groups")
        for p in self.producers + self.params:
            lines.append(f"  {p.role:9s} {p.node.op_type} '{p.node.name}' input {p.input_index} "
                         f"'{p.value.name}' axis {p.axis}")
        for v, d in self.dims:
            lines.append(f"  tensor    '{v.name}' axis {d.axis} ({len(d.atoms)} positions)")
        return "\n".join(lines)


class Analysis:
    """Channel groups of one model; the records the surgery needs to remove any set of channels."""

    def __init__(self, model: ir.Model) -> None:
        self.model = model
        self.opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
        self.store = ChannelStore()
        self.dims: dict[ir.Value, Dim] = {}
        self.params: list[ParamMember] = []
        self.rewrites: list[Rewrite] = []
        self.balances: list[tuple[np.ndarray, str]] = []
        self.groups: list[Group] = []
        self.roots: np.ndarray = np.zeros(0, dtype=np.int64)
        self.class_group: dict[int, tuple[int, int]] = {}  # chan root -> (group id, class index)

    # -- lookups used by criteria, plans and surgery --------------------------------------------
    def class_index(self, atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group id and class index of every position of an atoms array."""
        pairs = [self.class_group[r] for r in self.roots[atoms].tolist()]
        if not pairs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        g, k = zip(*pairs)
        return np.array(g), np.array(k)

    def producer_node(self, name: str) -> tuple[ir.Node, ParamMember]:
        """A Conv/Gemm/MatMul by node name or output tensor name, with its producer weight member."""
        for p in self.params:
            if p.role == "producer" and (p.node.name == name or p.node.outputs[0].name == name):
                return p.node, p
        return None, None

    @property
    def prunable_groups(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]


def analyze_groups(model: ir.Model) -> Analysis:
    """Run each node's rule from the op table in graph order and build the channel groups.

    The model must be normalised (constants as initializers, shapes inferred)."""
    an = Analysis(model)
    graph = model.graph
    for node in graph:
        _run_rule(an, node)
    for value, d in an.dims.items():
        if value.is_graph_output():
            an.store.freeze(d.atoms, f"tensor '{value.name}' is a graph output")
        for use in value.uses():
            if use.node.graph is not graph:
                an.store.freeze(d.atoms, f"tensor '{value.name}' is used inside a subgraph of "
                                         f"'{_outer_node_name(use.node, graph)}'")
    _build_groups(an)
    return an


def _outer_node_name(node: ir.Node, graph: ir.Graph) -> str:
    g = node.graph
    while g is not None and g is not graph:
        parent = getattr(g, "parent", None)
        if parent is None:
            break
        node = parent
        g = node.graph
    return node.name or node.op_type


def _run_rule(an: Analysis, node: ir.Node) -> None:
    tracked = [i for i, v in enumerate(node.inputs) if v is not None and v in an.dims]
    rule = optable.lookup(node.domain, node.op_type, an.opset if node.domain in ("", "ai.onnx") else 1)
    ctx = NodeContext(an, node, an.opset)
    if rule is None:
        if tracked:
            where = f"{node.op_type} node '{node.name}'"
            kind = "custom-domain op" if node.domain not in ("", "ai.onnx") else "op not in the op table"
            ctx.freeze_inputs(f"{kind}" + (" (control flow)" if node.op_type in ("If", "Loop", "Scan") else ""))
            del where
        return
    spaces_before = len(an.store.spaces)
    try:
        try:
            rule(ctx)
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
            # A configuration the rule was not written for: not understood, so frozen, never guessed.
            raise RuleUnsupported(f"not understood by its rule ({type(exc).__name__}: {exc})") from exc
    except RuleUnsupported as exc:
        _undo_outputs(an, node)
        ctx.freeze_inputs(str(exc))
        for space in an.store.spaces[spaces_before:]:
            an.store.freeze(np.arange(space.start, space.start + space.size), f"{ctx.where}: {exc}")
        return
    for i in tracked:
        if i not in ctx.handled:
            d = an.dims[node.inputs[i]]
            an.store.freeze(d.atoms, f"{ctx.where}: input {i} carries channels on axis {d.axis} the rule does not handle")


def _undo_outputs(an: Analysis, node: ir.Node) -> None:
    for out in node.outputs:
        an.dims.pop(out, None)


def _build_groups(an: Analysis) -> None:
    store = an.store
    n = len(store.chan.parent)
    an.roots = store.chan.roots()
    grp_roots = store.grp.roots()
    # Classes of a group in first-appearance order (atom ids follow graph order).
    by_group: dict[int, list[int]] = {}
    seen = set()
    for atom in range(n):
        r = int(an.roots[atom])
        if r in seen:
            continue
        seen.add(r)
        by_group.setdefault(int(grp_roots[atom]), []).append(r)
    gid_of: dict[int, int] = {}
    for gid, (groot, classes) in enumerate(sorted(by_group.items())):
        gid_of[groot] = gid
        an.groups.append(Group(gid, "", np.array(classes, dtype=np.int64)))
        for k, r in enumerate(classes):
            an.class_group[r] = (gid, k)
    reasons: dict[int, list[str]] = {}
    for atom, reason in store.freezes:
        lst = reasons.setdefault(gid_of[int(grp_roots[atom])], [])
        if reason not in lst:
            lst.append(reason)
    for gid, lst in reasons.items():
        an.groups[gid].frozen = lst
    for p in an.params:
        if len(p.atoms) == 0:
            continue
        g = an.groups[gid_of[int(grp_roots[p.atoms[0]])]]
        (g.producers if p.role == "producer" else g.params).append(p)
    for v, d in an.dims.items():
        if len(d.atoms):
            an.groups[gid_of[int(grp_roots[d.atoms[0]])]].dims.append((v, d))
    for g in an.groups:
        if g.producers:
            g.name = g.producers[0].node.name or g.producers[0].node.outputs[0].name
        else:
            space = next((s for s in store.spaces if s.size and int(grp_roots[s.start]) in gid_of
                          and gid_of[int(grp_roots[s.start])] == g.id), None)
            g.name = space.origin if space else f"group{g.id}"
            if not g.frozen:
                g.frozen.append("no producer weights (channels come from an input or a constant)")
    _attach_balances(an, gid_of, grp_roots)


def _attach_balances(an: Analysis, gid_of, grp_roots) -> None:
    """Record each grouped conv's equal-loss blocks on its group; overlapping, unequal ones freeze."""
    for blocks, where in an.balances:
        gids = {gid_of[int(grp_roots[a])] for a in blocks.ravel().tolist()}
        if len(gids) > 1:
            for gid in gids:
                _add_reason(an.groups[gid], f"{where}: its conv groups span several channel groups")
            continue
        g = an.groups[gids.pop()]
        idx = np.array([[an.class_group[int(an.roots[a])][1] for a in row] for row in blocks.tolist()])
        if all(set(row) == set(idx[0]) for row in idx.tolist()):
            continue  # every conv group holds the same channels (coupled by a shuffle): always balanced
        if len(np.unique(idx)) != idx.size:
            _add_reason(g, f"{where}: a channel appears in two of its conv groups")
            continue
        canon = np.sort(idx, axis=1)
        canon = canon[np.argsort(canon[:, 0])]
        members = set(idx.ravel().tolist())
        for other in g.blocks:
            if np.array_equal(other, canon):
                break
            if members & set(other.ravel().tolist()):
                _add_reason(g, f"{where}: grouped convs split this channel group in different ways")
                break
        else:
            g.blocks.append(canon)


def _add_reason(group: Group, reason: str) -> None:
    if reason not in group.frozen:
        group.frozen.append(reason)
