"""CPU INT8 for the InstanceHMR networks: static QDQ quantisation calibrated on real frames, judged by the people.

Why: on a CPU the official networks (ResNet-50 / HRNet-32 at 512) are the whole frame budget, and INT8 convolutions
are about twice as fast as FP32 ones. Static quantisation is only as good as its calibration, so the activation
ranges are measured on real street frames and photos letterboxed exactly like the app letterboxes them
(:func:`engine.preprocess.letterbox`), and the result is judged where it matters to the app: the people decoded
from its maps (:func:`engine.decode.decode_people`, default threshold) against those of the FP32 file on *other*
frames of the same footage. The quantiser itself is the one of :mod:`export.quantize` (one path for both model
families); this module adds the InstanceHMR inputs, the people-parity report and the runtime's gate,
:func:`int8_for`.

FP32 islands: the heads whose outputs feed decoding stay float (the last conv of the centre, camera, parameter and
joint heads, the ``1.1^x`` camera-scale ``Pow`` and the ops that assemble each output) -- the same rule the FP16 path
keeps (:func:`export.fp16.is_fp32_island`). A centre logit moved by one INT8 step can cross the threshold, and the
scale goes through an exponential, so both need float precision; they are a tiny share of the FLOPs.

If the result fails the rule, the whole head (everything after the backbone) is kept float and it is tried once
more: slower (ResNet-50 @512: 1.45-1.65x instead of 1.8-1.9x over FP32) but far closer to FP32 on the trained demo
network (root error 2.5 instead of 13 deg).

The report and its verdict go into the artifact's :class:`~engine.runtime.meta.ArtifactMeta` (``precision="int8"``,
``extra["int8"]``) together with the FP32 file's hash, so a stale or failing INT8 file is never used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from engine.errors import ExportError

from .quantize import HELDOUT_FRAMES, PHOTOS, QuantConfig, detector_frames, quantize_model

__all__ = ["CALIB_FRAMES", "DEFAULT_RULE", "Int8Build", "Int8Parity", "Int8Rule", "build_int8", "head_nodes",
           "int8_for", "int8_path", "letterboxed", "people_parity", "read_int8_record"]

log = logging.getLogger(__name__)

CALIB_FRAMES = range(0, 300)  # vtest.avi frames sampled for calibration; parity uses HELDOUT_FRAMES (disjoint)
CALIB_CONFIG = QuantConfig("minmax", "quint8", per_channel=True, keep_float=("islands",))
RECORD_KEY = "int8"  # ArtifactMeta.extra key


@dataclass(frozen=True)
class Int8Rule:
    """When the runtime may use an INT8 file instead of its FP32 source (all must hold; fixed before measuring).

    Why these bounds: the tracker bridges a person missing from one frame in twenty, but a steadily missing or
    phantom person is a visible failure, hence >= 95 % matched and <= 5 % extra. Five degrees of root rotation or of
    mean joint angle is below what the mesh overlay shows at arm's length and below the frame-to-frame jitter the
    smoother already absorbs; a 5 % camera-scale error is a 5 % depth error (translation z = 2 / s), the size of a
    typical person's height mis-estimate.

    Attributes:
        matched_frac: people of the FP32 model found by INT8 (centre within ``match_cells`` map cells), at least.
        extra_frac: INT8 people without an FP32 partner, per FP32 person, at most.
        root_deg_median: median root-rotation error (geodesic angle between rotation matrices), degrees, at most.
        joint_deg_median: median over people of the mean body-joint angle error, degrees, at most.
        cam_scale_rel_median: median |s_int8 / s_fp32 - 1| of the weak-perspective scale, at most.
        min_people: FP32 people the report must contain to say anything (fewer -> fail).
        match_cells: centre distance, in map cells, under which two detections are the same person.
    """

    matched_frac: float = 0.95
    extra_frac: float = 0.05
    root_deg_median: float = 5.0
    joint_deg_median: float = 5.0
    cam_scale_rel_median: float = 0.05
    min_people: int = 10
    match_cells: float = 1.5


DEFAULT_RULE = Int8Rule()


@dataclass
class Int8Parity:
    """INT8 vs FP32 decoded people over a set of frames (medians / p95 over matched people)."""

    frames: int = 0
    fp32_people: int = 0
    int8_people: int = 0
    matched: int = 0
    missing: int = 0
    extra: int = 0
    root_deg_median: float = float("nan")
    root_deg_p95: float = float("nan")
    joint_deg_median: float = float("nan")
    joint_deg_p95: float = float("nan")
    cam_scale_rel_median: float = float("nan")
    cam_scale_rel_p95: float = float("nan")
    cam_txy_abs_median: float = float("nan")
    score_abs_median: float = float("nan")
    frames_source: str = ""

    @property
    def matched_frac(self) -> float:
        return self.matched / self.fp32_people if self.fp32_people else 0.0

    @property
    def extra_frac(self) -> float:
        return self.extra / max(self.fp32_people, 1)

    def failures(self, rule: Int8Rule = DEFAULT_RULE) -> list[str]:
        """Which bounds of ``rule`` this report breaks (empty: it passes). NaN (no matched people) fails."""
        out = []
        if self.fp32_people < rule.min_people:
            out.append(f"only {self.fp32_people} FP32 people (< {rule.min_people}): too few to judge")
        if not self.matched_frac >= rule.matched_frac:
            out.append(f"matched {self.matched_frac:.1%} < {rule.matched_frac:.0%}")
        if not self.extra_frac <= rule.extra_frac:
            out.append(f"extra {self.extra_frac:.1%} > {rule.extra_frac:.0%}")
        for name in ("root_deg_median", "joint_deg_median", "cam_scale_rel_median"):
            got, bound = getattr(self, name), getattr(rule, name)
            if not got <= bound:
                out.append(f"{name} {got:.3g} > {bound:g}")
        return out

    def passes(self, rule: Int8Rule = DEFAULT_RULE) -> bool:
        return not self.failures(rule)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (round(v, 5) if isinstance(v, float) and np.isfinite(v) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Int8Parity:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{k: (float("nan") if v is None else v) for k, v in known.items()})

    def summary(self) -> str:
        return (f"{self.frames} frames ({self.frames_source}): FP32 {self.fp32_people} people, INT8 "
                f"{self.int8_people}; matched {self.matched} ({self.matched_frac:.1%}), missed {self.missing}, extra "
                f"{self.extra}; root rotation median {self.root_deg_median:.2f} deg (p95 {self.root_deg_p95:.2f}), "
                f"mean joint angle median {self.joint_deg_median:.2f} deg (p95 {self.joint_deg_p95:.2f}), camera "
                f"scale median {self.cam_scale_rel_median:.2%} (p95 {self.cam_scale_rel_p95:.2%}), camera tx/ty "
                f"median {self.cam_txy_abs_median:.4f}, centre score median {self.score_abs_median:.4f}")


def _angles_deg(aa_a: np.ndarray, aa_b: np.ndarray) -> np.ndarray:
    """Geodesic angle between the rotations of two axis-angle arrays [..., 3] (degrees)."""
    from engine.geometry import axis_angle_to_rotmat_np

    ra = axis_angle_to_rotmat_np(aa_a.reshape(-1, 3).astype(np.float64))
    rb = axis_angle_to_rotmat_np(aa_b.reshape(-1, 3).astype(np.float64))
    cos = (np.einsum("nij,nij->n", ra, rb) - 1.0) / 2.0  # trace(Ra^T Rb) = 1 + 2 cos(theta)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).reshape(aa_a.shape[:-1])


def _match(a: np.ndarray, b: np.ndarray, max_dist: float) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs of centres [N, 2] / [M, 2], closest first, within ``max_dist``."""
    if not len(a) or not len(b):
        return []
    d = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(d, axis=None):
        i, j = divmod(int(flat), d.shape[1])
        if d[i, j] > max_dist:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    return pairs


BACKBONE_SCOPE = "/model/backbone/"  # node-name prefix the exporter gives the backbone's nodes


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Every node outside the backbone (the centre / camera / joint / parameter heads and their glue).

    Why float: on the trained demo network, quantising the heads too matched 55 % of the FP32 people (median root
    error 13 deg); with the heads float and only the backbone INT8, 89 % (root 2.5 deg, joints 0.3 deg, camera
    scale 1 %). The backbone holds most of the FLOPs of the official ResNet-50 / HRNet-32 networks."""
    names = [n.name for n in model.graph.node if n.name and not n.name.startswith(BACKBONE_SCOPE)]
    if len(names) == len(model.graph.node):
        log.warning("no node under %s: cannot tell the backbone from the heads; only the islands stay float",
                    BACKBONE_SCOPE)
        return []
    return names


def letterboxed(frames: Sequence[np.ndarray], input_size: int) -> np.ndarray:
    """BGR frames -> the network batch [N, 3, S, S] the app feeds (its own letterbox)."""
    from engine.preprocess import letterbox

    return np.stack([letterbox(f, input_size)[0] for f in frames]).astype(np.float32)


def people_parity(fp32_onnx: str | Path, int8_onnx: str | Path, frames: Sequence[np.ndarray], *,
                  threshold: float | None = None, threads: int = 2, rule: Int8Rule = DEFAULT_RULE,
                  source: str = "") -> Int8Parity:
    """Decode both models' maps on ``frames`` (BGR) and compare the people.

    Args:
        threshold: centre threshold (default: :class:`engine.decode.DecodeCfg`'s, the app's default).
        rule: only its ``match_cells`` is used here (how near two centres must be to be one person).
    """
    from engine.decode import DecodeCfg, decode_people
    from engine.preprocess import letterbox
    from engine.runtime.onnxruntime_backend import OnnxRuntimeBackend

    cpu = ("CPUExecutionProvider",)
    ref = OnnxRuntimeBackend(fp32_onnx, intra_op_threads=threads, providers=cpu)
    q = OnnxRuntimeBackend(int8_onnx, intra_op_threads=threads, providers=cpu)
    cfg = DecodeCfg() if threshold is None else DecodeCfg(threshold=threshold)
    size = ref.input_size
    rep = Int8Parity(frames_source=source)
    root, joint, scale, txy, score = [], [], [], [], []
    try:
        for frame in frames:
            image, box = letterbox(frame, size)
            ma, mb = ref.infer(image[None]), q.infer(image[None])
            stride = size / ma["params_maps"].shape[-1]
            a = decode_people(ma["center_map"][0], ma["params_maps"][0], box.input_size, cfg)
            b = decode_people(mb["center_map"][0], mb["params_maps"][0], box.input_size, cfg)
            pairs = _match(a.center_preds, b.center_preds, rule.match_cells * stride)
            rep.frames += 1
            rep.fp32_people += len(a.center_preds)
            rep.int8_people += len(b.center_preds)
            rep.matched += len(pairs)
            rep.missing += len(a.center_preds) - len(pairs)
            rep.extra += len(b.center_preds) - len(pairs)
            if not pairs:
                continue
            ia, ib = (np.array(p) for p in zip(*pairs))
            root += list(_angles_deg(a.global_orient[ia], b.global_orient[ib]))
            body_a = a.body_pose[ia, :63].reshape(-1, 21, 3)  # joints 22, 23 (hands) are always zero
            body_b = b.body_pose[ib, :63].reshape(-1, 21, 3)
            joint += list(_angles_deg(body_a, body_b).mean(axis=1))
            scale += list(np.abs(b.cam[ib, 0] / np.maximum(a.cam[ia, 0], 1e-6) - 1.0))
            txy += list(np.abs(b.cam[ib, 1:3] - a.cam[ia, 1:3]).max(axis=1))
            score += list(np.abs(b.center_confs[ib] - a.center_confs[ia]))
    finally:
        ref.close()
        q.close()
    if root:
        rep.root_deg_median, rep.root_deg_p95 = (float(np.percentile(root, p)) for p in (50, 95))
        rep.joint_deg_median, rep.joint_deg_p95 = (float(np.percentile(joint, p)) for p in (50, 95))
        rep.cam_scale_rel_median, rep.cam_scale_rel_p95 = (float(np.percentile(scale, p)) for p in (50, 95))
        rep.cam_txy_abs_median = float(np.median(txy))
        rep.score_abs_median = float(np.median(score))
    return rep


def int8_path(onnx_path: str | Path) -> Path:
    """Where the INT8 file of an FP32 export lives: next to it, ``<stem>_int8.onnx``."""
    p = Path(onnx_path)
    return p.with_name(p.stem + "_int8.onnx")


@dataclass
class Int8Build:
    """What :func:`build_int8` wrote and how it compares with FP32."""

    path: Path
    parity: Int8Parity
    passed: bool
    failures: list[str]
    kept_float: list[str]
    calibration: str
    method: str
    rule: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        verdict = "PASS: the runtime will use it on CPU" if self.passed else \
            "FAIL (" + "; ".join(self.failures) + "): the runtime keeps FP32"
        return [f"INT8 {self.path.name}: {self.method}; {len(self.kept_float)} nodes kept float "
                f"({', '.join(self.kept_float[:4])}{' ...' if len(self.kept_float) > 4 else ''})",
                f"  calibration: {self.calibration}",
                f"  people parity vs FP32: {self.parity.summary()}",
                f"  rule {self.rule}: {verdict}"]


def _default_frames(calib: int, parity: int) -> tuple[list[np.ndarray], str, list[np.ndarray], str]:
    """Calibration: ``calib`` vtest.avi frames spread over CALIB_FRAMES plus the opencv-doc photos; parity: ``parity``
    frames spread over HELDOUT_FRAMES (disjoint, later part of the clip: other people, other places)."""
    cal = detector_frames(CALIB_FRAMES, calib, PHOTOS)
    held = detector_frames(HELDOUT_FRAMES, parity)
    if not cal or not held:
        raise ExportError("no calibration frames: vtest.avi and the sample photos come with `apt-get install "
                          "opencv-doc`; or pass calibration frames explicitly")
    photos = [t for t, _ in cal if not t.startswith("vtest")]
    cal_desc = (f"{len(cal) - len(photos)} vtest.avi frames {CALIB_FRAMES.start}-{CALIB_FRAMES.stop - 1}"
                f"{' + ' + ', '.join(photos) if photos else ''}")
    held_desc = f"vtest.avi frames {HELDOUT_FRAMES.start}-{HELDOUT_FRAMES.stop - 1}, disjoint from calibration"
    return [f for _, f in cal], cal_desc, [f for _, f in held], held_desc


def build_int8(fp32_onnx: str | Path, dst: str | Path | None = None, *, calib_frames: Sequence[np.ndarray] = (),
               parity_frames: Sequence[np.ndarray] = (), calib_count: int = 32, parity_count: int = 40,
               cfg: QuantConfig = CALIB_CONFIG, float_head: bool | None = None, rule: Int8Rule = DEFAULT_RULE,
               threads: int = 2, sources: tuple[str, str] = ("given frames", "given frames")) -> Int8Build:
    """Quantise an exported FP32 InstanceHMR ONNX to ``dst`` (default :func:`int8_path`) and judge it.

    The INT8 file is written whether or not it passes (so the numbers can be inspected); its metadata carries the
    report and the verdict, and :func:`int8_for` hands it to the runtime only when it passed.

    Args:
        calib_frames / parity_frames: BGR frames; empty = real footage (see :func:`_default_frames`).
        float_head: True: every head node stays float (:func:`head_nodes`); False: only the islands. None (default):
            islands only first (measured 1.8-1.9x on ResNet-50 @512 vs 1.45-1.65x with the head float), and the
            float head only if that fails the rule.
    """
    from .onnx import read_onnx_meta

    src = Path(fp32_onnx)
    dst = Path(dst) if dst else int8_path(src)
    proto = onnx.load(str(src), load_external_data=False)
    meta = read_onnx_meta(proto, str(src))
    if meta.precision != "fp32":
        raise ExportError(f"{src} is {meta.precision}, not fp32; quantise the FP32 export")
    head = tuple(head_nodes(proto))
    del proto
    cal_desc, held_desc = sources
    if not len(calib_frames) or not len(parity_frames):
        cal_d, cal_desc_d, held_d, held_desc_d = _default_frames(calib_count, parity_count)
        if not len(calib_frames):
            calib_frames, cal_desc = cal_d, cal_desc_d
        if not len(parity_frames):
            parity_frames, held_desc = held_d, held_desc_d
    samples = letterboxed(calib_frames, meta.input_size)
    calibration = f"{len(samples)} letterboxed frames ({cal_desc})"
    tries = [False, True] if float_head is None else [float_head]
    built: Int8Build | None = None
    for keep_head in tries:
        c = replace(cfg, keep_float=(*cfg.keep_float, *head)) if keep_head else cfg
        built = _quantize_and_judge(src, dst, meta, samples, calibration, parity_frames, held_desc, c, rule, threads)
        if built.passed:
            break
        if keep_head is not tries[-1]:
            log.info("INT8 with only the islands float fails (%s); retrying with the whole head float",
                     "; ".join(built.failures))
    assert built is not None
    return built


def _quantize_and_judge(src: Path, dst: Path, meta: Any, samples: np.ndarray, calibration: str,
                        parity_frames: Sequence[np.ndarray], held_desc: str, cfg: QuantConfig, rule: Int8Rule,
                        threads: int) -> Int8Build:
    from engine.runtime.artifacts import file_sha256

    from .onnx import set_onnx_meta

    tmp = dst.with_name(dst.name + ".tmp")
    try:
        _, kept = quantize_model(src, tmp, [samples], cfg)
    except Exception as e:  # ORT's quantiser raises assorted types; one line, cause kept
        tmp.unlink(missing_ok=True)
        raise ExportError(f"INT8 quantisation of {src.name} failed: {type(e).__name__}: "
                          f"{(str(e).splitlines() or [''])[0][:200]}") from e
    parity = people_parity(src, tmp, parity_frames, threads=threads, rule=rule, source=held_desc)
    failures = parity.failures(rule)
    record = {"fp32_onnx_sha256": file_sha256(src), "method": cfg.describe(), "calibration": calibration,
              "parity": parity.as_dict(), "rule": asdict(rule), "pass": not failures, "failures": failures}
    proto = onnx.load(str(tmp))
    set_onnx_meta(proto, replace(meta, precision="int8", fp32_islands=tuple(kept),
                                 extra={**meta.extra, RECORD_KEY: record}))
    onnx.save(proto, str(tmp))
    tmp.replace(dst)
    return Int8Build(dst, parity, not failures, failures, kept, calibration, cfg.describe(), asdict(rule))


def read_int8_record(int8_onnx: str | Path) -> dict[str, Any] | None:
    """The INT8 record in an artifact's metadata, or None when it has none (not an INT8 export of this app)."""
    from .onnx import read_onnx_meta

    try:
        meta = read_onnx_meta(onnx.load(str(int8_onnx), load_external_data=False), str(int8_onnx))
    except Exception as e:  # unreadable, foreign or old file: not usable, and not an error for the caller
        log.info("INT8 file %s unreadable (%s)", int8_onnx, e)
        return None
    rec = meta.extra.get(RECORD_KEY)
    return rec if meta.precision == "int8" and isinstance(rec, dict) else None


def int8_for(onnx_path: str | Path, rule: Int8Rule | None = None) -> Path | None:
    """The INT8 artifact to run instead of ``onnx_path`` on a CPU, or None (then run the FP32 file).

    Returns it only when it exists, was quantised from exactly this FP32 file (content hash) and its stored people
    parity passes ``rule`` (default :data:`DEFAULT_RULE`, re-evaluated now, so a stricter rule in a newer app also
    applies to old files). Logs why not otherwise.
    """
    from engine.runtime.artifacts import file_sha256

    path = int8_path(onnx_path)
    if not path.is_file():
        return None
    rec = read_int8_record(path)
    if rec is None:
        log.info("INT8: %s carries no INT8 parity record; using FP32", path.name)
        return None
    if rec.get("fp32_onnx_sha256") != file_sha256(onnx_path):
        log.info("INT8: %s was quantised from another FP32 file; using FP32 (re-run export onnx --int8)", path.name)
        return None
    failures = Int8Parity.from_dict(rec.get("parity", {})).failures(rule or DEFAULT_RULE)
    if failures:
        log.info("INT8: %s failed its people-parity rule (%s); using FP32", path.name, "; ".join(failures))
        return None
    return path
