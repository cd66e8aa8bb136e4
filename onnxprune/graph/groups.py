"""The analysis driver: run every node's rule, then collect atoms into channel groups."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from onnxprune.graph import optable
from onnxprune.graph.channels import ChannelStore
from onnxprune.graph.context import Dim, NodeContext, ParamMember, Rewrite, RuleUnsupported
from onnxprune.graph.rules import shapes
from onnxprune.graph.rules.heads import ATTENTION_UNITS
from onnxprune.passes.normalize import infer_shapes


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
    # Grouped convs and torch.chunk: each [n_blocks, per_block] array of class indices must lose
    # equal counts per row.
    blocks: list[np.ndarray] = field(default_factory=list)
    # Tensors that hold only some of the group's channels (a Split output, a Slice): (tensor name, class
    # indices). Each must keep one, or it would become an empty tensor that runtimes refuse.
    segments: list[tuple[str, np.ndarray]] = field(default_factory=list)

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
            lines.append(f"  {b.size} channels balanced over {len(b)} conv groups or chunks")
        for p in self.producers + self.params:
            lines.append(f"  {p.role:9s} {p.node.op_type} '{p.node.name}' input {p.input_index} "
                         f"'{p.value.name}' axis {p.axis}")
        for v, d in self.dims:
            lines.append(f"  tensor    '{v.name}' axis {d.axis} ({len(d.atoms)} positions)")
        return "\n".join(lines)


class Analysis:
    """Channel groups of one model; the records the surgery needs to remove any set of channels."""

    def __init__(self, model: ir.Model, attention_unit: str = "head") -> None:
        self.model = model
        self.attention_unit = attention_unit  # "head": whole attention heads; "dim": head dimensions
        self.opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
        self.store = ChannelStore()
        self.dims: dict[ir.Value, Dim] = {}
        self.params: list[ParamMember] = []
        self.rewrites: list[Rewrite] = []
        self.balances: list[tuple[np.ndarray, str, str]] = []  # (atoms [blocks, per block], where, unit)
        self.shape_vecs: dict[ir.Value, list] = {}  # Shape results: where each entry's number comes from
        self.filled_shapes = 0  # output shapes rules derived where ONNX inference gave up
        self.groups: list[Group] = []
        self.roots: np.ndarray = np.zeros(0, dtype=np.int64)  # atom -> its channel's root atom
        self.class_gid: np.ndarray = np.zeros(0, dtype=np.int64)  # root atom -> group id
        self.class_pos: np.ndarray = np.zeros(0, dtype=np.int64)  # root atom -> channel index in its group
        self.applied = False  # set by the surgery: an analysis prunes its model once

    # -- lookups used by criteria, plans and surgery --------------------------------------------
    def class_index(self, atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group id and class index of every position of an atoms array."""
        r = self.roots[np.asarray(atoms, dtype=np.int64)]
        return self.class_gid[r], self.class_pos[r]

    def channels_in(self, group: Group, atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of ``atoms`` that hold channels of ``group`` (a tensor after a Concat holds several
        groups), and the channel index at each of them."""
        r = self.roots[np.asarray(atoms, dtype=np.int64)]
        positions = np.nonzero(self.class_gid[r] == group.id)[0]
        return positions, self.class_pos[r[positions]]

    def producer_node(self, name: str) -> tuple[ir.Node | None, ParamMember | None]:
        """A Conv/Gemm/MatMul by node name or output tensor name, with its producer weight member."""
        for p in self.params:
            if p.role == "producer" and (p.node.name == name or p.node.outputs[0].name == name):
                return p.node, p
        return None, None

    @property
    def prunable_groups(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]


def analyze_groups(model: ir.Model, attention_unit: str = "head") -> Analysis:
    """Run each node's rule from the op table in graph order and build the channel groups.

    The model must be normalised (constants as initializers, shapes inferred). Where a rule derived a
    shape ONNX inference could not (Shape-computed Reshape targets), shapes are inferred again from
    it and the analysis runs once more, so ops downstream see ranks and sizes.

    ``attention_unit`` is what a head split in decomposed attention removes: whole heads ("head") or
    the same dimensions from every head ("dim")."""
    if attention_unit not in ATTENTION_UNITS:
        raise ValueError(f"attention_unit must be one of {ATTENTION_UNITS}, not {attention_unit!r}")
    an = _analyze_once(model, attention_unit)
    known = _known_shapes(model)
    for _ in range(8):  # each round can only add shapes; stop when none was added
        if not an.filled_shapes:
            break
        infer_shapes(model)
        now = _known_shapes(model)
        if now <= known:
            break
        known = now
        an = _analyze_once(model, attention_unit)
    return an


def _known_shapes(model: ir.Model) -> int:
    return sum(1 for node in model.graph for out in node.outputs if out.shape is not None)


def _analyze_once(model: ir.Model, attention_unit: str) -> Analysis:
    an = Analysis(model, attention_unit)
    graph = model.graph
    for node in graph:
        _run_rule(an, node)
    for value in an.shape_vecs:
        if value.is_graph_output() or any(u.node.graph is not graph for u in value.uses()):
            _freeze_shape_readers(an, value, f"shape tensor '{value.name}' leaves the graph or enters a subgraph")
    owners = _subgraph_owners(graph)
    for value, d in an.dims.items():
        if value.is_graph_output():
            an.store.freeze(d.atoms, f"tensor '{value.name}' is a graph output")
        for use in value.uses():
            if use.node.graph is not graph:
                owner = owners.get(id(use.node.graph))
                where = f"{owner.op_type} node '{owner.name}'" if owner is not None else "a node"
                an.store.freeze(d.atoms, f"tensor '{value.name}' is used inside a subgraph of {where} "
                                         "(control flow is not followed)")
    _build_groups(an)
    return an


def _subgraph_owners(graph: ir.Graph) -> dict[int, ir.Node]:
    """id of every (nested) subgraph -> the node of ``graph`` (If, Loop, Scan...) that holds it."""
    owners: dict[int, ir.Node] = {}

    def visit(g: ir.Graph, top: ir.Node) -> None:
        owners[id(g)] = top
        for node in g:
            for sub in _node_subgraphs(node):
                visit(sub, top)

    for node in graph:
        for sub in _node_subgraphs(node):
            visit(sub, node)
    return owners


def _node_subgraphs(node: ir.Node) -> list[ir.Graph]:
    subs = []
    for a in node.attributes.values():
        if a.type == ir.AttributeType.GRAPH:
            subs.append(a.value)
        elif a.type == ir.AttributeType.GRAPHS:
            subs.extend(a.value)
    return subs


def _run_rule(an: Analysis, node: ir.Node) -> None:
    tracked = [i for i, v in enumerate(node.inputs) if v is not None and v in an.dims]
    rule = optable.lookup(node.domain, node.op_type, an.opset if node.domain in ("", "ai.onnx") else 1)
    ctx = NodeContext(an, node, an.opset)
    if rule is None:
        _freeze_unhandled_shapes(an, node, None)
        if tracked:
            kind = "custom-domain op" if node.domain not in ("", "ai.onnx") else "op not in the op table"
            ctx.freeze_inputs(kind + (" (control flow)" if node.op_type in ("If", "Loop", "Scan") else ""))
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
        _freeze_unhandled_shapes(an, node, None)
        ctx.freeze_inputs(str(exc))
        for space in an.store.spaces[spaces_before:]:
            an.store.freeze(np.arange(space.start, space.start + space.size), f"{ctx.where}: {exc}")
        return
    for i in tracked:
        if i not in ctx.handled:
            d = an.dims[node.inputs[i]]
            an.store.freeze(d.atoms, f"{ctx.where}: input {i} carries channels on axis {d.axis} the rule does not handle")
    _freeze_unhandled_shapes(an, node, ctx)


def _freeze_unhandled_shapes(an: Analysis, node: ir.Node, ctx: NodeContext | None) -> None:
    """A Shape result used where no rule follows it: any channel count it holds must not change."""
    for i, v in enumerate(node.inputs):
        if v is not None and v in an.shape_vecs and (ctx is None or i not in ctx.shapes_read):
            _freeze_shape_readers(an, v, f"{node.op_type} node '{node.name}' computes with it (a data-dependent shape)")


def _freeze_shape_readers(an: Analysis, value: ir.Value, why: str) -> None:
    for e in an.shape_vecs[value]:
        if shapes.reads_channels(an, e):
            an.store.freeze(an.dims[e.value].atoms, f"the channel count of '{e.value.name}' is read at run time: {why}")


def _undo_outputs(an: Analysis, node: ir.Node) -> None:
    for out in node.outputs:
        an.dims.pop(out, None)
        an.shape_vecs.pop(out, None)


def _build_groups(an: Analysis) -> None:
    store = an.store
    an.roots, grp_roots = store.partitions()
    classes = np.unique(an.roots)  # class roots in graph order
    class_grp = grp_roots[classes]
    group_roots, group_of_class = np.unique(class_grp, return_inverse=True)
    an.class_gid = np.full(store.n_atoms, -1, dtype=np.int64)
    an.class_pos = np.full(store.n_atoms, -1, dtype=np.int64)
    order = np.argsort(group_of_class, kind="stable")
    bounds = np.searchsorted(group_of_class[order], np.arange(len(group_roots) + 1))
    for gid in range(len(group_roots)):
        members = classes[order[bounds[gid]:bounds[gid + 1]]]
        an.groups.append(Group(gid, "", members))
        an.class_gid[members] = gid
        an.class_pos[members] = np.arange(len(members))
    gid_of = {int(r): gid for gid, r in enumerate(group_roots)}
    gid_of_atom = np.full(store.n_atoms, -1, dtype=np.int64)
    gid_of_atom[group_roots] = np.arange(len(group_roots))
    gid_of_atom = gid_of_atom[grp_roots]
    for atoms, reason in store.freezes:
        for gid in dict.fromkeys(gid_of_atom[atoms].tolist()):  # in atom order, as the groups' reasons read
            _add_reason(an.groups[gid], reason)
    # A member after a Concat holds channels of several groups: it belongs to each of them.
    for p in an.params:
        for gid in np.unique(an.class_gid[an.roots[p.atoms]]).tolist():
            g = an.groups[gid]
            (g.producers if p.role == "producer" else g.params).append(p)
    seen: set[tuple[int, bytes]] = set()
    for v, d in an.dims.items():
        r = an.roots[d.atoms]
        for gid in np.unique(an.class_gid[r]).tolist():
            g = an.groups[gid]
            g.dims.append((v, d))
            cls = np.unique(an.class_pos[r[an.class_gid[r] == gid]])
            if len(cls) < g.size and (gid, cls.tobytes()) not in seen:
                seen.add((gid, cls.tobytes()))
                g.segments.append((v.name or "?", cls))
    for g in an.groups:
        if g.producers:
            g.name = g.producers[0].node.name or g.producers[0].node.outputs[0].name
            continue
        space = next((s for s in store.spaces if s.size and gid_of.get(int(grp_roots[s.start])) == g.id), None)
        g.name = space.origin if space else f"group{g.id}"
        if not g.frozen:
            g.frozen.append("no producer weights (channels come from an input or a constant)")
    _attach_balances(an, gid_of, grp_roots)


def _attach_balances(an: Analysis, gid_of, grp_roots) -> None:
    """Record each grouped conv's equal-loss blocks on its group; overlapping, unequal ones freeze."""
    for blocks, where, unit in an.balances:
        gids = {gid_of[int(grp_roots[a])] for a in blocks.ravel().tolist()}
        if len(gids) > 1:
            for gid in gids:
                _add_reason(an.groups[gid], f"{where}: its {unit} span several channel groups")
            continue
        g = an.groups[gids.pop()]
        idx = an.class_pos[an.roots[blocks]]
        rows, counts = zip(*(np.unique(r, return_counts=True) for r in idx))
        if all(np.array_equal(r, rows[0]) for r in rows):
            continue  # every block holds the same channels (coupled by a shuffle): always balanced
        # After a shuffle a channel may fill several positions of one block; that is fine as long
        # as each channel lives in one block and all fill the same number of positions.
        if (len(set(np.concatenate(rows).tolist())) != sum(len(r) for r in rows) or len({len(r) for r in rows}) > 1
                or len(set(np.concatenate(counts).tolist())) > 1):
            _add_reason(g, f"{where}: a channel spans several of its {unit}")
            continue
        idx = np.stack(rows)
        canon = np.sort(idx, axis=1)
        canon = canon[np.argsort(canon[:, 0])]
        members = set(idx.ravel().tolist())
        for other in g.blocks:
            if np.array_equal(other, canon):
                break
            if members & set(other.ravel().tolist()):
                _add_reason(g, f"{where}: grouped convs or chunks split this channel group in different ways")
                break
        else:
            g.blocks.append(canon)


def _add_reason(group: Group, reason: str) -> None:
    if reason not in group.frozen:
        group.frozen.append(reason)
