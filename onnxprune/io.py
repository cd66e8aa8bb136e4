"""Loading and saving models through onnx-ir: weights stay memory-mapped, IN is never written."""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx
import onnx_ir as ir

from onnxprune import weights
from onnxprune.errors import InputError, OptionError


def load_model(path: str | os.PathLike) -> ir.Model:
    """Load IN with its external data resolved next to it; raise InputError on anything unreadable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected an .onnx file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    try:
        model = ir.load(path)
    except Exception as exc:  # protobuf raises several unrelated types on garbage
        raise InputError(f"{path}: not a readable ONNX model ({_short(exc)})") from exc
    if len(model.graph) == 0 or not model.graph.outputs:
        raise InputError(f"{path}: not a readable ONNX model (the graph has no nodes or outputs)")
    _check_external_data(model, path)
    return model


def _check_external_data(model: ir.Model, path: Path) -> None:
    """Fail early and clearly if an external-data file is missing or too short."""
    for tensor in _external_tensors(model):
        data = Path(tensor.base_dir) / tensor.location
        if not data.is_file():
            raise InputError(f"{path}: external data file '{tensor.location}' for tensor '{tensor.name}' "
                             f"not found next to the model (looked at {data})")
        end = (tensor.offset or 0) + (tensor.length or 0)
        if tensor.length and data.stat().st_size < end:
            raise InputError(f"{path}: external data file '{tensor.location}' is truncated "
                             f"(tensor '{tensor.name}' needs bytes up to {end})")


def check_output_path(in_path: str | os.PathLike | None, out_path: str | os.PathLike) -> Path:
    """Refuse, before any work is done: OUT == IN, an OUT (or the data file written beside it) that is a
    file IN references, and an OUT whose folder cannot be written."""
    out = Path(out_path)
    if in_path is not None:  # nothing IN references may be opened for writing
        refuse_input_files(in_path, [(out, "output"), (external_data_path(out), "output's external data file")])
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OptionError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OptionError(f"cannot write {out}: folder {parent} is not writable")
    if out.is_dir():
        raise OptionError(f"cannot write {out}: it is a directory")
    return out


def external_data_path(out_path: str | os.PathLike) -> Path:
    """Where the external data of OUT goes: ``OUT.data`` beside it."""
    out = Path(out_path)
    return out.parent / f"{out.name}.data"


def referenced_files(path: str | os.PathLike) -> list[Path]:
    """The external-data files a model file references (every tensor, subgraphs included), resolved
    against its folder; [] when the file cannot be read as ONNX (loading reports that)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return []
    # IN is checked against every output (OUT, its data, --report, --plot, --quantize) before any work:
    # parse it once, not once per check (a model with embedded weights is a large parse)
    return list(_referenced_files(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=8)
def _referenced_files(path: str, _mtime_ns: int, _size: int) -> tuple[Path, ...]:
    """``referenced_files`` for one version of the file (the stat fields key the cache)."""
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - an unreadable IN is reported by load_model with its reason
        return ()
    folder = Path(path).parent
    return tuple(sorted({folder / e.value for t in _all_tensors(proto) for e in t.external_data
                         if e.key == "location"}))


def refuse_input_files(src: str | os.PathLike, targets: list[tuple[Path, str]]) -> None:
    """Raise OptionError if any target (path, what it is) is IN or an external-data file IN references."""
    src = Path(src)
    for ref in [src, *referenced_files(src)]:
        for target, what in targets:
            if _same_file(Path(target), ref):
                which = ("the input model" if ref == src else
                         f"the external data file '{ref.name}' that the input model reads its weights from")
                raise OptionError(f"the {what} {target} is {which}; choose another output name or folder")


def _same_file(a: Path, b: Path) -> bool:
    """One file under two spellings, a symlink or a hard link."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_overwriting_sources(model: ir.Model, targets: list[Path]) -> None:
    """The model being saved still reads unchanged tensors from its source files: never write over one
    (this covers models handed to the API, whose source path ``check_output_path`` never saw), nor over
    one a pruned weight is still to be sliced from when saved."""
    sources = {Path(t.base_dir) / t.location for t in _external_tensors(model)}
    for graph in (model.graph, *model.graph.subgraphs()):
        sources.update(Path(f) for v in graph.initializers.values() if (f := weights.file_of(v.const_value)))
    for source in sources:
        for target in targets:
            if _same_file(target, source):
                raise OptionError(f"cannot write {target}: the model's weights are read from that file "
                                  "(external data of the input); choose another output name or folder")


# Models whose weights would not fit one protobuf (2 GiB) are written with external data.
_EXTERNAL_THRESHOLD = 1_800_000_000


def save_model(model: ir.Model, out_path: str | os.PathLike, external_data: bool | None = None,
               before_replace: Callable[[Path], None] | None = None, copy_of: Path | None = None) -> Path:
    """Write atomically: a temp file beside OUT, then rename; external data goes next to OUT.

    ``external_data=None`` keeps external data when the input had it or the weights are large.
    ``before_replace(temp_path)`` runs on the written temp model (e.g. validation); if it raises,
    nothing is left at OUT. ``copy_of``: the file ``model`` was loaded from, unchanged: its bytes are
    written as they are (a re-serialisation adds the value types onnx-ir knows), unless its weights live
    in a data file (OUT must name its own).
    """
    out = Path(out_path)
    _refuse_overwriting_sources(model, [out, external_data_path(out)])
    if external_data is None:
        external_data = _uses_external_data(model) or _weight_bytes(model) > _EXTERNAL_THRESHOLD
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent or ".")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes 0600; OUT gets normal file permissions
    tmp = Path(tmp_name)
    data_name = external_data_path(out).name
    tmp_data = out.parent / f".{data_name}.tmp{os.getpid()}"
    try:
        if external_data:
            # onnx-ir writes the data file relative to the model file; give it its final name
            # in the model, then move both into place.
            ir.save(model, tmp, external_data=tmp_data.name)
            if before_replace is not None:
                before_replace(tmp)
            _relocate_external_name(tmp, tmp_data.name, data_name)
            os.replace(tmp_data, out.parent / data_name)
        else:
            if copy_of is not None and not _uses_external_data(model):
                shutil.copyfile(copy_of, tmp)
            else:
                ir.save(model, tmp)
            if before_replace is not None:
                before_replace(tmp)
        os.replace(tmp, out)
    except Exception as exc:
        for leftover in (tmp, tmp_data):
            if leftover.exists():
                leftover.unlink()
        if isinstance(exc, OSError):
            raise OptionError(f"cannot write {out}: {exc.strerror or exc}") from exc
        raise
    return out


def _relocate_external_name(model_file: Path, old: str, new: str) -> None:
    """Point every external tensor of a saved model at the final data file name."""
    proto = onnx.load(model_file, load_external_data=False)
    for tensor in _all_tensors(proto):
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new
    onnx.save(proto, model_file)


def _all_tensors(proto: onnx.ModelProto):
    """Every TensorProto of a model: initializers and tensor attributes, in subgraphs too."""
    graphs = [proto.graph]
    while graphs:
        graph = graphs.pop()
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)


def _external_tensors(model: ir.Model):
    """Tensors still read from an external-data file: initializers and Constant values, subgraphs too."""
    for graph in (model.graph, *model.graph.subgraphs()):
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                yield value.const_value
        for node in graph:
            for attr in node.attributes.values():
                if attr.type == ir.AttributeType.TENSOR and isinstance(attr.value, ir.ExternalTensor):
                    yield attr.value


def _uses_external_data(model: ir.Model) -> bool:
    return next(_external_tensors(model), None) is not None


def _weight_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def exposing(proto: onnx.ModelProto, names: list[str], only: bool = False) -> bytes:
    """``proto`` serialized with the tensors ``names`` as graph outputs: added to its own outputs, or
    (``only``) instead of them, so onnxruntime computes nothing that does not lead to them. Types are
    left to onnxruntime; ``proto`` itself is left as it was."""
    saved = list(proto.graph.output)
    have = set() if only else {o.name for o in saved} | {i.name for i in proto.graph.input}
    if only:
        del proto.graph.output[:]
    proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in dict.fromkeys(names) if n not in have)
    try:
        return proto.SerializeToString()
    finally:
        del proto.graph.output[:]
        proto.graph.output.extend(saved)
