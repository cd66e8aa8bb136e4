"""Benchmark onnxprune's wall time and peak memory against plain onnx/onnxruntime baselines.

Two models, built in a work directory (default: a fresh temp dir; ``--workdir`` reuses one and
skips models that are already there):

* ``resnet50``: onnx's ``light_resnet50`` architecture with seeded random weights
  (``tests/zoo.py: light_model("resnet50")``), one ~100 MB .onnx file.
* ``big``: a VGG-like float32 stack (Conv3x3+Relu, MaxPool, Flatten, a wide Gemm head) whose
  width is chosen so the weights total ``--big-gb`` GB (1e9 bytes); saved with all weights in one
  external-data file ``big_<GB>gb.onnx.data``, in the same layout as
  ``onnx.save(..., save_as_external_data=True, all_tensors_to_one_file=True, location=...)``
  (tensors >= 1 KiB appended unaligned), but written one tensor (in chunks) at a time so
  generation never holds the weights in memory.

Comparisons, each sample in a fresh process (``--repeat`` samples, interleaved):

* ``prune``: ``onnxprune IN OUT --ratio R --no-validate --quiet``
  vs baseline A: ``onnx.load(IN)`` + ``onnx.save(model, OUT2)`` (external data for ``big``).
* ``full``: ``onnxprune IN OUT --ratio R --quiet`` (default command, validates in onnxruntime)
  vs baseline B: baseline A, then the loaded proto is dropped and two onnxruntime CPU sessions
  (IN and the saved copy) are created, both kept alive, and each is run once on the same seeded
  random input of the declared shape (free dims: batch 1, others 64, like onnxprune).

onnxprune runs as its console script (next to ``sys.executable``; ``python -m onnxprune`` if
absent). Baselines run as ``python tools/bench_prune.py --child baseline-a|baseline-b ...``.
Wall time is measured by this process around spawn..exit for both sides (so both include
interpreter start-up and imports). Peak RSS is the ``ru_maxrss`` that ``os.wait4`` returns for
that one child (its own peak, including any children it waited for). This driver stays
stdlib-only and small because Linux may fold the spawning process's RSS into the child's
``ru_maxrss`` at exec (vfork); the driver's own peak is recorded in the JSON as a floor.

Reported per row: median wall time, max peak RSS, ratios onnxprune/baseline, target
(default <= 1.5x for both) and PASS/FAIL. A Markdown table is printed; ``--json FILE`` writes
everything, including the raw samples. Exit status: 0 if every row passes, 1 otherwise.
Timings are only meaningful on an otherwise idle machine: the 1-minute load average at start and
end is printed under the table and stored in the JSON.

``--breakdown`` adds, per model, one in-process run of the full command in a child that hooks
``onnxprune.progress.Stages.next`` and reports wall time and peak RSS per pipeline stage (the
peak is reset at every stage through /proc/self/clear_refs). It is a diagnostic only: it relies on
onnxprune's internal stage names and is not part of the PASS/FAIL rows.

Usage::

    python tools/bench_prune.py                                  # both models, 3 repeats
    python tools/bench_prune.py --models big --big-gb 1.0 --workdir /tmp/onnxprune-bench \\
        --repeat 3 --json bench.json --breakdown
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("resnet50", "big")
MIB = 1024 * 1024


# --------------------------------------------------------------------------------------------
# Children (run as ``python bench_prune.py --child KIND ...``); heavy imports live only here.
# --------------------------------------------------------------------------------------------

def _self_peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _child_gen_resnet50(out: Path) -> dict:
    import onnx
    sys.path.insert(0, str(ROOT / "tests"))
    from zoo import light_model  # noqa: E402  (tests/zoo.py)

    model = light_model("resnet50")
    tmp = out.with_name(out.name + ".partial")
    onnx.save(model, tmp)
    os.replace(tmp, out)
    return {"path": str(out), "bytes": out.stat().st_size}


def _big_arch(scale: float) -> tuple[list[list[int]], int, int]:
    """Conv stages (VGG-16 layout at width ``scale``), hidden width of the Gemm head, classes."""
    def r8(x: float) -> int:
        return max(8, int(round(x / 8)) * 8)
    base = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512]]
    return [[r8(c * scale) for c in stage] for stage in base], r8(4096 * scale), 1000


_BIG_INPUT = (1, 3, 32, 32)  # four 2x2 pools -> 2x2 before Flatten


def _big_weight_shapes(scale: float) -> list[tuple[str, tuple[int, ...], str, int]]:
    """(name, shape, op, fan_in) of every initializer of the big model, in graph order."""
    stages, hidden, classes = _big_arch(scale)
    shapes = []
    cin = _BIG_INPUT[1]
    i = 0
    for stage in stages:
        for cout in stage:
            shapes.append((f"conv{i}.weight", (cout, cin, 3, 3), "Conv", cin * 9))
            shapes.append((f"conv{i}.bias", (cout,), "Conv", 0))
            cin = cout
            i += 1
    spatial = (_BIG_INPUT[2] // 2 ** len(stages)) * (_BIG_INPUT[3] // 2 ** len(stages))
    dims = [cin * spatial, hidden, hidden, classes]
    for j in range(3):
        shapes.append((f"fc{j}.weight", (dims[j + 1], dims[j]), "Gemm", dims[j]))
        shapes.append((f"fc{j}.bias", (dims[j + 1],), "Gemm", 0))
    return shapes


def _big_bytes(scale: float) -> int:
    total = 0
    for _, shape, _, _ in _big_weight_shapes(scale):
        n = 1
        for d in shape:
            n *= d
        total += 4 * n
    return total


def _big_scale(gb: float) -> float:
    lo, hi = 0.05, 64.0
    target = gb * 1e9
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _big_bytes(mid) < target else (lo, mid)
    return (lo + hi) / 2


def _child_gen_big(out: Path, gb: float, seed: int = 0) -> dict:
    """Write the big model: weights streamed to ``OUT.data`` in chunks, then the small graph proto."""
    import numpy as np
    import onnx
    from onnx import TensorProto, external_data_helper, helper, numpy_helper

    scale = _big_scale(gb)
    stages, hidden, classes = _big_arch(scale)
    rng = np.random.default_rng(seed)
    location = out.name + ".data"
    data_path = out.with_name(location)
    inits = []
    chunk_elems = 8 * MIB  # 32 MiB of float32 per write
    with open(data_path, "wb") as fh:
        for name, shape, _op, fan_in in _big_weight_shapes(scale):
            n = 1
            for d in shape:
                n *= d
            std = float(np.sqrt(2.0 / fan_in)) if fan_in else 0.01
            if n * 4 + 33 < 1024:  # onnx.save keeps tensors under its 1 KiB threshold inline
                arr = (rng.standard_normal(shape, dtype=np.float32) * np.float32(std))
                inits.append(numpy_helper.from_array(arr, name))
                continue
            offset = fh.tell()
            done = 0
            while done < n:
                k = min(chunk_elems, n - done)
                part = rng.standard_normal(k, dtype=np.float32)
                part *= np.float32(std)
                fh.write(part.astype("<f4", copy=False).tobytes())
                done += k
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
            t.raw_data = b"\0"  # set_external_data insists on raw_data; cleared just below
            external_data_helper.set_external_data(t, location, offset, n * 4)
            t.ClearField("raw_data")
            inits.append(t)
    nodes = []
    x = "input"
    i = 0
    for s, stage in enumerate(stages):
        for _ in stage:
            nodes.append(helper.make_node("Conv", [x, f"conv{i}.weight", f"conv{i}.bias"], [f"conv{i}"],
                                          name=f"conv{i}", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"], name=f"relu{i}"))
            x = f"relu{i}"
            i += 1
        nodes.append(helper.make_node("MaxPool", [x], [f"pool{s}"], name=f"pool{s}", kernel_shape=[2, 2],
                                      strides=[2, 2]))
        x = f"pool{s}"
    nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1))
    x = "flat"
    for j in range(3):
        y = "logits" if j == 2 else f"fc{j}"
        nodes.append(helper.make_node("Gemm", [x, f"fc{j}.weight", f"fc{j}.bias"], [y], name=f"fc{j}", transB=1))
        x = y
        if j < 2:
            nodes.append(helper.make_node("Relu", [y], [f"fc{j}.relu"], name=f"fc{j}.relu"))
            x = f"fc{j}.relu"
    graph = helper.make_graph(
        nodes, f"vgg_like_{gb:g}gb",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(_BIG_INPUT))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [_BIG_INPUT[0], classes])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="bench_prune")
    model.ir_version = 8
    tmp = out.with_name(out.name + ".partial")
    onnx.save(model, tmp)  # tensors already external: only the graph is written here
    onnx.checker.check_model(str(tmp))
    os.replace(tmp, out)  # the .onnx appears last: its presence means the model is complete
    return {"path": str(out), "bytes": out.stat().st_size, "data_bytes": data_path.stat().st_size,
            "scale": scale, "conv_widths": stages, "gemm_hidden": hidden, "input_shape": list(_BIG_INPUT),
            "gen_peak_rss_mib": _self_peak_kib() / 1024}


def _random_feeds(sess, seed: int = 0) -> dict:
    import numpy as np
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else (1 if i == 0 else 64) for i, d in enumerate(inp.shape)]
        dtype = types[inp.type]
        feeds[inp.name] = (rng.standard_normal(shape).astype(dtype) if np.issubdtype(dtype, np.floating)
                           else rng.integers(0, 10, shape).astype(dtype))
    return feeds


def _child_baseline(kind: str, src: Path, dst: Path, external: bool) -> dict:
    stages = {}
    t0 = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal t0
        t = time.perf_counter()
        stages[name] = round(t - t0, 4)
        t0 = t

    import onnx
    mark("import_onnx")
    model = onnx.load(str(src))
    mark("load")
    if external:
        onnx.save(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=dst.name + ".data")
    else:
        onnx.save(model, str(dst))
    mark("save")
    if kind == "baseline-b":
        del model
        import onnxruntime as ort
        mark("import_ort")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        s_in = ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
        s_out = ort.InferenceSession(str(dst), opts, providers=["CPUExecutionProvider"])
        mark("sessions")
        feeds = _random_feeds(s_in)
        r_in = s_in.run(None, feeds)
        r_out = s_out.run(None, feeds)
        mark("run")
        assert all(a.shape == b.shape for a, b in zip(r_in, r_out))
    return {"stages_s": stages, "self_peak_rss_mib": _self_peak_kib() / 1024}


def _child_breakdown(argv: list[str]) -> dict:
    """onnxprune's CLI in-process with per-stage wall time, peak RSS (reset per stage) and RSS."""
    def status() -> dict:
        out = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024
        return out

    def reset_peak() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return True
        except OSError:
            return False

    t_start = time.perf_counter()
    rows = []
    current = {"stage": "import onnxprune + parse args", "t": t_start}
    resettable = reset_peak()

    def close_stage(now: float) -> None:
        st = status()
        rows.append({"stage": current["stage"], "wall_s": round(now - current["t"], 4),
                     "peak_rss_mib": round(st["VmHWM"], 1), "rss_end_mib": round(st["VmRSS"], 1)})
        reset_peak()

    import onnxprune.cli as cli
    import onnxprune.progress as progress

    original_next = progress.Stages.next
    original_init = progress.Stages.__init__

    def hooked_init(self, names, enabled=True):
        now = time.perf_counter()
        close_stage(now)
        current.update(stage="checks before load", t=now)
        original_init(self, names, enabled)

    def hooked_next(self, label):
        now = time.perf_counter()
        close_stage(now)
        current.update(stage=label, t=now)
        original_next(self, label)

    progress.Stages.__init__ = hooked_init
    progress.Stages.next = hooked_next
    code = cli.main(argv)
    now = time.perf_counter()
    close_stage(now)
    rows[-1]["stage"] += " (+ finish)"
    return {"exit_code": code, "stages": rows, "total_s": round(now - t_start, 4), "peak_reset": resettable,
            "self_peak_rss_mib": _self_peak_kib() / 1024}


def _run_child(argv: list[str]) -> int:
    kind = argv[0]
    if kind == "gen-resnet50":
        result = _child_gen_resnet50(Path(argv[1]))
    elif kind == "gen-big":
        result = _child_gen_big(Path(argv[1]), float(argv[2]))
    elif kind in ("baseline-a", "baseline-b"):
        result = _child_baseline(kind, Path(argv[1]), Path(argv[2]), argv[3] == "external")
    elif kind == "breakdown":
        result = _child_breakdown(argv[1:])
    else:
        raise SystemExit(f"unknown child kind {kind}")
    print("BENCH_JSON " + json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# Driver (stdlib only).
# --------------------------------------------------------------------------------------------

def _onnxprune_cmd() -> list[str]:
    script = Path(sys.executable).parent / "onnxprune"
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [sys.executable, "-m", "onnxprune"]


def _child_cmd(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", *args]


def measure(cmd: list[str], log_dir: Path, cwd: Path | None = None) -> dict:
    """Spawn ``cmd``; wall time around spawn..exit, peak RSS from ``os.wait4`` of that child."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_f = tempfile.TemporaryFile(dir=log_dir)
    err_f = tempfile.TemporaryFile(dir=log_dir)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped; keep Popen from waiting
    out_f.seek(0)
    err_f.seek(0)
    stdout = out_f.read().decode(errors="replace")
    stderr = err_f.read().decode(errors="replace")
    out_f.close()
    err_f.close()
    payload = None
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            payload = json.loads(line[len("BENCH_JSON "):])
    return {"cmd": cmd, "exit_code": proc.returncode, "wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime, "child": payload,
            "stdout_tail": stdout[-4000:] if proc.returncode else "", "stderr_tail": stderr[-4000:]}


def _clean_dir(d: Path) -> None:
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)


def prepare_models(names: list[str], workdir: Path, big_gb: float) -> dict:
    info = {}
    for name in names:
        if name == "resnet50":
            path = workdir / "resnet50.onnx"
            cmd = _child_cmd("gen-resnet50", str(path))
            external = False
        else:
            path = workdir / f"big_{big_gb:g}gb.onnx"
            cmd = _child_cmd("gen-big", str(path), repr(big_gb))
            external = True
        data = path.with_name(path.name + ".data")
        if path.is_file() and (not external or data.is_file()):
            print(f"[bench] reusing {path}", file=sys.stderr, flush=True)
            gen = None
        else:
            print(f"[bench] generating {path} ...", file=sys.stderr, flush=True)
            gen = measure(cmd, workdir / "logs")
            if gen["exit_code"] != 0:
                raise SystemExit(f"generating {name} failed:\n{gen['stderr_tail']}")
            print(f"[bench]   done in {gen['wall_s']:.1f}s, peak RSS {gen['peak_rss_mib']:.0f} MiB",
                  file=sys.stderr, flush=True)
        info[name] = {"path": path, "external": external,
                      "onnx_bytes": path.stat().st_size, "data_bytes": data.stat().st_size if external else 0,
                      "generation": None if gen is None else {k: gen[k] for k in ("wall_s", "peak_rss_mib", "child")}}
    return info


def _summ(samples: list[dict]) -> dict:
    ok = [s for s in samples if s["exit_code"] == 0]
    if len(ok) != len(samples) or not ok:
        return {"ok": False}
    return {"ok": True, "wall_s": statistics.median(s["wall_s"] for s in ok),
            "peak_rss_mib": max(s["peak_rss_mib"] for s in ok),
            "wall_all_s": [round(s["wall_s"], 3) for s in ok],
            "peak_all_mib": [round(s["peak_rss_mib"], 1) for s in ok]}


def run(args) -> dict:
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in names if m not in MODELS]
    if bad or not names:
        raise SystemExit(f"--models: choose from {', '.join(MODELS)} (got {args.models!r})")
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        cleanup = False
    else:
        workdir = Path(tempfile.mkdtemp(prefix="onnxprune-bench-"))
        cleanup = not args.keep
    try:
        return _run_in(args, names, workdir)
    finally:
        if cleanup:
            shutil.rmtree(workdir, ignore_errors=True)


def _run_in(args, names: list[str], workdir: Path) -> dict:
    prune = _onnxprune_cmd()
    models = prepare_models(names, workdir, args.big_gb)
    out_dir = workdir / "out"
    logs = workdir / "logs"
    ratio = str(args.ratio)
    results = {"models": {}, "rows": []}
    for name in names:
        m = models[name]
        src = m["path"]
        ext = "external" if m["external"] else "inline"
        out = out_dir / f"{name}_pruned.onnx"
        out2 = out_dir / f"{name}_copy.onnx"
        plans = {
            ("prune", "onnxprune"): [*prune, str(src), str(out), "--ratio", ratio, "--no-validate", "--quiet"],
            ("prune", "baseline"): _child_cmd("baseline-a", str(src), str(out2), ext),
            ("full", "onnxprune"): [*prune, str(src), str(out), "--ratio", ratio, "--quiet"],
            ("full", "baseline"): _child_cmd("baseline-b", str(src), str(out2), ext),
        }
        samples = {key: [] for key in plans}
        for rep in range(args.repeat):
            for key, cmd in plans.items():
                _clean_dir(out_dir)
                # cwd = out_dir: onnx.save refuses a relative external 'location' that exists in the cwd
                s = measure(cmd, logs, cwd=out_dir)
                s["outputs"] = {p.name: p.stat().st_size for p in sorted(out_dir.iterdir())}
                samples[key].append(s)
                status = "ok" if s["exit_code"] == 0 else f"EXIT {s['exit_code']}"
                print(f"[bench] {name} {key[0]:5s} {key[1]:9s} #{rep + 1}: {s['wall_s']:7.2f}s "
                      f"{s['peak_rss_mib']:8.0f} MiB  {status}", file=sys.stderr, flush=True)
                if s["exit_code"] != 0:
                    print(s["stderr_tail"], file=sys.stderr, flush=True)
        _clean_dir(out_dir)
        model_res = {"path": str(src), "onnx_bytes": m["onnx_bytes"], "data_bytes": m["data_bytes"],
                     "generation": m["generation"], "samples": {f"{k[0]}/{k[1]}": v for k, v in samples.items()}}
        for comp, label in (("prune", "prune --no-validate vs load+save (A)"),
                            ("full", "full default vs load+save+2 ORT sessions+run (B)")):
            p, b = _summ(samples[(comp, "onnxprune")]), _summ(samples[(comp, "baseline")])
            row = {"model": name, "comparison": comp, "label": label, "onnxprune": p, "baseline": b,
                   "target": args.target}
            if p["ok"] and b["ok"]:
                row["time_ratio"] = p["wall_s"] / b["wall_s"]
                row["mem_ratio"] = p["peak_rss_mib"] / b["peak_rss_mib"]
                fails = [what for what, r in (("time", row["time_ratio"]), ("memory", row["mem_ratio"]))
                         if r > args.target]
                row["result"] = "PASS" if not fails else "FAIL (" + ", ".join(fails) + ")"
            else:
                row["result"] = "ERROR (" + ("onnxprune" if not p["ok"] else "baseline") + " failed)"
                failed = [s for s in samples[(comp, "onnxprune" if not p["ok"] else "baseline")]
                          if s["exit_code"]]
                row["error"] = {"cmd": " ".join(failed[0]["cmd"]), "exit_code": failed[0]["exit_code"],
                                "stderr": failed[0]["stderr_tail"]}
            results["rows"].append(row)
        if args.breakdown:
            _clean_dir(out_dir)
            s = measure(_child_cmd("breakdown", str(src), str(out), "--ratio", ratio, "--quiet"), logs, cwd=out_dir)
            model_res["breakdown"] = {"wall_s": s["wall_s"], "peak_rss_mib": s["peak_rss_mib"],
                                      "exit_code": s["exit_code"], "child": s["child"],
                                      "stderr_tail": s["stderr_tail"]}
            _clean_dir(out_dir)
        results["models"][name] = model_res
    return results


def _fmt_model(name: str, m: dict) -> str:
    size = (m["onnx_bytes"] + m["data_bytes"]) / 1e6
    return f"{name} ({size:,.0f} MB{', ext. data' if m['data_bytes'] else ''})"


def markdown(results: dict, args) -> str:
    lines = [
        f"onnxprune vs plain onnx/onnxruntime, `--ratio {args.ratio}`, {args.repeat} runs each "
        f"(median wall time, max peak RSS), target <= {args.target:g}x",
        "",
        "| model | comparison | onnxprune time | baseline time | time ratio | onnxprune peak RSS | "
        "baseline peak RSS | memory ratio | target | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["rows"]:
        p, b = row["onnxprune"], row["baseline"]
        t = lambda s: f"{s['wall_s']:.2f} s" if s["ok"] else "failed"  # noqa: E731
        r = lambda s: f"{s['peak_rss_mib']:,.0f} MiB" if s["ok"] else "failed"  # noqa: E731
        tr = f"{row['time_ratio']:.2f}x" if "time_ratio" in row else "-"
        mr = f"{row['mem_ratio']:.2f}x" if "mem_ratio" in row else "-"
        lines.append(f"| {_fmt_model(row['model'], results['models'][row['model']])} | {row['label']} | "
                     f"{t(p)} | {t(b)} | {tr} | {r(p)} | {r(b)} | {mr} | <= {row['target']:g}x | {row['result']} |")
    for name, m in results["models"].items():
        bd = m.get("breakdown")
        if not bd:
            continue
        lines += ["", f"Stages of the full command on {name} (in-process, one run; peak RSS reset per stage):", "",
                  "| stage | wall | peak RSS in stage | RSS at end |", "|---|---:|---:|---:|"]
        if bd["child"]:
            for st in bd["child"]["stages"]:
                lines.append(f"| {st['stage']} | {st['wall_s']:.2f} s | {st['peak_rss_mib']:,.0f} MiB | "
                             f"{st['rss_end_mib']:,.0f} MiB |")
        else:
            lines.append(f"| failed (exit {bd['exit_code']}) | | | |")
    errors = [row for row in results["rows"] if "error" in row]
    for row in errors:
        lines += ["", f"{row['model']} / {row['comparison']}: `{row['error']['cmd']}` exited "
                  f"{row['error']['exit_code']}:", "", "```", row["error"]["stderr"].rstrip(), "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        return _run_child(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet50,big", help="comma list of: resnet50, big (default both)")
    ap.add_argument("--big-gb", type=float, default=1.0, help="weights of the big model in GB (default 1.0)")
    ap.add_argument("--repeat", type=int, default=3, help="samples per measurement (default 3)")
    ap.add_argument("--ratio", type=float, default=0.3, help="onnxprune --ratio (default 0.3)")
    ap.add_argument("--target", type=float, default=1.5, help="max onnxprune/baseline ratio (default 1.5)")
    ap.add_argument("--workdir", help="keep models here and reuse them between runs (default: temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp work dir")
    ap.add_argument("--json", metavar="FILE", help="write all results (with raw samples) here")
    ap.add_argument("--breakdown", action="store_true", help="also time/measure onnxprune's stages in-process")
    args = ap.parse_args(argv)
    if args.repeat < 1 or args.big_gb <= 0:
        ap.error("--repeat must be >= 1 and --big-gb > 0")
    load_start = os.getloadavg()[0]
    results = run(args)
    results["config"] = {"ratio": args.ratio, "repeat": args.repeat, "target": args.target, "big_gb": args.big_gb,
                         "models": args.models, "onnxprune_cmd": _onnxprune_cmd(), "python": sys.version,
                         "platform": platform.platform(), "cpus": os.cpu_count(),
                         "driver_peak_rss_mib": _self_peak_kib() / 1024,
                         "loadavg_1min": [load_start, os.getloadavg()[0]]}
    table = markdown(results, args)
    table += (f"\n\n1-minute load average at start / end: {load_start:.2f} / {os.getloadavg()[0]:.2f} "
              f"on {os.cpu_count()} CPUs")
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0 if all(r["result"] == "PASS" for r in results["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
