"""Gradient criteria through the torch twin: per-sample gate gradients, Taylor, the singularity rank
and cap on planted redundancy, Dirichlet ranking a useless channel last, and fine-tuning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxprune
from onnxprune.errors import OptionError

ROOT = Path(__file__).resolve().parents[1]


def _planted(head_outputs: int = 1, classifier: bool = False, seed: int = 0):
    """x[N,4,6,6] -> conv (12, bias) -> Relu -> conv 1x1 (head_outputs) -> GlobalAveragePool -> y.
    Channel 3 duplicates channel 1, channel 7 is 2 x channel 2, channel 5 is dead: 9 distinct live."""
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal((12, 4, 3, 3)), rng.standard_normal(12) * 0.1
    w[3], b[3] = w[1], b[1]
    w[7], b[7] = 2 * w[2], 2 * b[2]
    w[5], b[5] = 0, -1.0
    inits = {"w": w, "b": b, "w2": rng.standard_normal((head_outputs, 12, 1, 1))}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["h"], name="head", kernel_shape=[1, 1]),
             helper.make_node("GlobalAveragePool", ["h"], ["p"], name="gap")]
    out_shape = ["N", head_outputs, 1, 1]
    if classifier:
        nodes.append(helper.make_node("Flatten", ["p"], ["y"], name="flat"))
        out_shape = ["N", head_outputs]
    else:
        nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _calib(tmp_path, n=64, labels=None):
    x = np.random.default_rng(1).standard_normal((n, 4, 6, 6)).astype(np.float32)
    arrays = {"x": x} if labels is None else {"x": x, "labels": labels}
    np.savez(tmp_path / "calib.npz", **arrays)
    return tmp_path / "calib.npz"


def _gradients(model, path):
    from onnxprune.criteria.gradient import gate_gradients, load_calibration

    m = onnxprune.api.load_normalized(model)
    an = onnxprune.analyze(m)
    (g,) = an.prunable_groups
    return gate_gradients(m, an, load_calibration(m, path), progress=False)[g.id]


def test_gate_gradients_are_per_sample_and_match_finite_differences(tmp_path):
    import torch

    from onnxprune.twin import Twin

    model = _planted()
    G = _gradients(model, _calib(tmp_path, n=32))
    assert G.shape == (32, 12)
    assert np.all(G[:, 5] == 0)  # the dead channel
    # finite difference on one sample with the random-probe loss <r, y> (r is seeded per batch)
    m = onnxprune.api.load_normalized(model)
    x = np.load(tmp_path / "calib.npz")["x"][:32]
    r = torch.randn((32, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    base = Twin(m)(x)[0]
    w = m.graph.initializers["w2"].const_value.numpy().copy()
    eps = 1e-3
    w[:, 4] *= 1 + eps  # scaling channel 4's read = gate 1 + eps
    m.graph.initializers["w2"].const_value = ir.Tensor(w, name="w2")
    moved = Twin(m)(x)[0]
    fd = ((moved - base) * r).reshape(32, -1).sum(1).detach().numpy() / eps
    assert np.allclose(G[:, 4], fd, rtol=1e-2, atol=1e-4)


def test_singularity_rank_is_the_distinct_live_channels_and_the_cap_the_planted_redundancy(tmp_path):
    from onnxprune.criteria.gradient import singularity

    G = _gradients(_planted(), _calib(tmp_path, n=64))
    # the live spectrum decays to ~5e-3 of sigma_1 here (one output reads all channels), the planted
    # redundancy is exactly 0: a tolerance of 1e-4 separates them (the default 1e-2 is for trained nets)
    (red,) = singularity({0: G}, tau=1e-4).values()
    assert red.rank == 9 and red.cap == 3
    # the most independent channels are chosen first: the dead one and one of each copy pair go
    order = np.argsort(red.scores)[:3]
    assert 5 in order and len({1, 3} & set(order)) == 1 and len({2, 7} & set(order)) == 1


def test_singularity_auto_prunes_to_the_cap_and_reports_the_redundancy(tmp_path):
    _, report = onnxprune.prune(_planted(), ratio="auto", criterion="singularity", data=_calib(tmp_path, n=64),
                                     gradient_options={"tau": 1e-4})
    s = report["singularity"]
    assert report["channels_removed"] == 3 and s["max_redundancy"]["channels"] == 3
    assert s["groups"]["conv"] == {"channels": 12, "rank": 9, "max_ratio": 0.25}
    assert s["max_redundancy"]["flops"] == report["flops_before"] - report["flops_after"]
    assert "warning" not in s
    _, few = onnxprune.prune(_planted(), ratio="auto", criterion="singularity", data=_calib(tmp_path, n=16),
                             validate=False, gradient_options={"tau": 1e-4})
    assert "at least 24" in few["singularity"]["warning"]


def test_taylor_scores_the_dead_channel_lowest(tmp_path):
    from onnxprune.criteria.gradient import taylor_scores

    scores = taylor_scores({0: _gradients(_planted(head_outputs=3), _calib(tmp_path))})[0]
    assert scores.argmin() == 5 and scores[5] == 0


@pytest.mark.parametrize("sampling", [False, True])
def test_dirichlet_ranks_a_useless_channel_last(tmp_path, sampling):
    """Every live channel adds evidence for the class the model predicts (positive head weights after a
    ReLU), channel 9 is computed but never read: its posterior share must end up the smallest. (The
    method ranks a channel that works against the model's answer below a useless one, by design.)"""
    from onnxprune.criteria.gradient import (
        dirichlet_scores,
        load_calibration,
        reference_outputs,
    )

    model = _planted(head_outputs=2, classifier=True)
    w2 = np.zeros((2, 12, 1, 1), np.float32)
    w2[0, :, 0, 0] = np.random.default_rng(3).uniform(0.05, 0.15, 12)  # logits stay unsaturated
    w2[:, 9] = 0
    model.graph.initializer[2].CopyFrom(numpy_helper.from_array(w2, "w2"))
    m = onnxprune.api.load_normalized(model)
    an = onnxprune.analyze(m)
    calib = load_calibration(m, _calib(tmp_path))
    reference = reference_outputs(m, calib)
    (importance,) = dirichlet_scores(m, an, calib, reference, steps_=60, sampling=sampling,
                                     progress=False).values()
    live = [k for k in range(12) if k not in (5, 9)]  # 5 is dead: as useless as 9
    assert importance[9] < min(importance[live])


def test_finetune_recovers_and_writes_the_weights_back(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import digits_models as dm
    finally:
        sys.path.pop(0)
    test = np.load(ROOT / "models" / "digits_test.npz")
    cnn, calib = ROOT / "models" / "digits_cnn.onnx", ROOT / "models" / "digits_calib.npz"
    plain, _ = onnxprune.prune(cnn, ratio=0.4, validate=False)
    tuned, report = onnxprune.prune(cnn, ratio=0.4, data=calib, finetune=100, output=tmp_path / "ft.onnx")
    acc = {k: dm.onnx_accuracy(ir.to_proto(v).SerializeToString(), test["input"], test["labels"])
           for k, v in (("plain", plain), ("tuned", tuned))}
    assert report["finetune"]["loss_last"] < report["finetune"]["loss_first"]
    assert acc["tuned"] > acc["plain"] + 0.05
    assert dm.onnx_accuracy(str(tmp_path / "ft.onnx"), test["input"], test["labels"]) == acc["tuned"]


def test_gradient_option_errors(tmp_path):
    with pytest.raises(OptionError, match="needs calibration data"):
        onnxprune.prune(_planted(), ratio=0.2, criterion="taylor")
    with pytest.raises(OptionError, match="needs calibration data"):
        onnxprune.prune(_planted(), ratio=0.2, finetune=10)
    code = ("import sys; sys.modules['torch'] = None\n"
            "import onnxprune\n"
            "try:\n    import onnxprune.twin\nexcept onnxprune.errors.OnnxPruneError as e:\n    print(e)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert "pip install onnxprune[torch]" in res.stdout, res.stderr
    # the CLI: a gradient criterion or --finetune without torch is a user error, not a traceback
    for extra in (["--criterion", "taylor", "--ratio", "0.2"], ["--ratio", "0.2", "--finetune", "5"]):
        cli = ("import sys; sys.modules['torch'] = None\nfrom onnxprune.cli import main\n"
               f"sys.exit(main({[str(ROOT / 'models' / 'digits_cnn.onnx'), str(tmp_path / 'o.onnx'), *extra, '--data', str(ROOT / 'models' / 'digits_calib.npz')]!r}))")
        res = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, check=False)
        assert res.returncode == 2 and "onnxprune[torch]" in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_a_folder_of_images_is_calibration_data(tmp_path):
    """--data DIR: images converted, resized, scaled and normalised as stated, fed in batches."""
    from PIL import Image

    from onnxprune.data import DataSource

    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / f"img{i:02d}.png")
    source = DataSource(tmp_path, input_size=(6, 6), mean=(0.5,), std=(0.25,))
    x = source.arrays({"x": (["N", 3, 6, 6], np.float32)})["x"]
    assert x.shape == (40, 3, 6, 6) and x.min() >= -2.0 - 1e-6 and x.max() <= 2.0 + 1e-6
    first = np.asarray(Image.open(tmp_path / "img00.png").convert("RGB").resize((6, 6), Image.BILINEAR), np.float32)
    assert np.allclose(x[0], (first.transpose(2, 0, 1) / 255 - 0.5) / 0.25, atol=1e-6)
    model = _planted()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3
    w = numpy_helper.to_array(model.graph.initializer[0])[:, :3].copy()
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(w, "w"))
    _, report = onnxprune.prune(model, ratio="auto", criterion="singularity", data=source, validate=False)
    assert report["singularity"]["samples"] == 40
    res = subprocess.run([sys.executable, "-m", "onnxprune", str(ROOT / "models" / "digits_cnn.onnx"),
                          str(tmp_path / "o.onnx"), "--criterion", "taylor", "--ratio", "0.2", "--data", str(tmp_path),
                          "--std", "0"], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and "--std values must not be 0" in res.stderr


def test_a_fixed_batch_of_one_is_fed_sample_by_sample(tmp_path):
    model = _planted()
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    data = _calib(tmp_path, n=48)
    _, report = onnxprune.prune(model, ratio="auto", criterion="singularity", data=data, validate=False,
                                gradient_options={"tau": 1e-4})
    assert report["singularity"]["samples"] == 48 and report["channels_removed"] == 3
    _, auto = onnxprune.prune(model, ratio="auto", data=data, validate=False)
    assert auto["auto"]["inputs"].startswith("data file")


def test_dirichlet_kl_term_counts(tmp_path):
    """beta really weighs KL(Dir(phi) || Dir(alpha0)): with alpha0 = 1 a large beta holds the posterior
    near uniform, beta = 0 lets the task loss spread it."""
    from onnxprune.criteria.gradient import (
        dirichlet_scores,
        load_calibration,
        reference_outputs,
    )

    model = _planted(head_outputs=3, classifier=True)
    m = onnxprune.api.load_normalized(model)
    an = onnxprune.analyze(m)
    calib = load_calibration(m, _calib(tmp_path))
    reference = reference_outputs(m, calib)
    spread = {}
    for beta in (0.0, 100.0):
        (imp,) = dirichlet_scores(m, an, calib, reference, steps_=40, beta=beta, progress=False).values()
        spread[beta] = float(np.std(imp))
    assert spread[100.0] < 0.5 * spread[0.0], spread


@pytest.mark.parametrize("exporter", ["torchscript13", "dynamo18"])
@pytest.mark.parametrize("arch", ["residual", "mobilenet_se", "dense_concat", "channel_split", "grouped_conv",
                                  "flatten_gemm", "convtranspose_decoder", "transformer_block"])
def test_gradient_criteria_and_finetune_run_on_every_architecture(arch, exporter, tmp_path):
    """Gates on every read of a channel and the twin of the pruned model (which may hold emptied
    branches) on each torch-built architecture: singularity to its caps, then a few fine-tuning steps,
    and the result still runs in onnxruntime."""
    import onnx
    import torch_archs

    path = torch_archs.export_arch(arch, exporter, tmp_path)
    first = onnx.load(str(path)).graph.input[0]
    dims = [d.dim_value if d.dim_value > 0 else 16 for d in first.type.tensor_type.shape.dim]
    dims[0] = 16
    np.savez(tmp_path / "c.npz", **{first.name: np.random.default_rng(0).standard_normal(dims).astype(np.float32)})
    _, report = onnxprune.prune(path, ratio="auto", criterion="singularity", data=tmp_path / "c.npz", finetune=3,
                                output=tmp_path / "o.onnx")
    assert report["singularity"]["samples"] == 16 and report["finetune"]["steps"] == 3
    assert report["validation"]["outputs"]


def test_finetune_leaves_one_element_constants_alone(tmp_path):
    """An RMSNorm's Pow exponent and epsilon are constants of the computation, not weights: a step on
    the exponent (z ** 2.05 of z < 0) made every output NaN."""
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((8, 16)), "w2": rng.standard_normal((16, 8)),
             "w3": rng.standard_normal((8, 4)), "two": np.array(2.0), "eps": np.array(1e-5)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"], name="fc1"), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["z"], name="fc2"), helper.make_node("Pow", ["z", "two"], ["sq"]),
             helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1], keepdims=1),
             helper.make_node("Add", ["ms", "eps"], ["v"]), helper.make_node("Sqrt", ["v"], ["s"]),
             helper.make_node("Div", ["z", "s"], ["n"]), helper.make_node("MatMul", ["n", "w3"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "rms", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((64, 8)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=x)
    tuned, report = onnxprune.prune(model, ratio=0.25, data=tmp_path / "calib.npz", finetune=5,
                                    gradient_options={"lr": 0.05}, validate=False)
    weights = {k: v.const_value.numpy() for k, v in tuned.graph.initializers.items()}
    assert weights["two"] == 2.0 and weights["eps"] == np.float32(1e-5)
    assert report["finetune"]["loss_last"] < report["finetune"]["loss_first"]
    import onnxruntime as ort

    y = ort.InferenceSession(ir.to_proto(tuned).SerializeToString()).run(None, {"x": x})[0]
    assert np.isfinite(y).all()
