"""The app's configuration: one frozen tree, built and validated once at the CLI boundary.

Contradictory options fail here with one line (they are never silently rewritten), and every output path is
checked writable before a model is loaded or a thread is started.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from engine.errors import ConfigError
from engine.runtime.device import DEVICE_CHOICES_HELP, parse_device
from engine.runtime.formats import BACKENDS  # the one table of the runtime, the exporter and the CLI

from .export_mesh import FORMATS as MESH_FORMATS
from .export_mesh import MESH_SPACES
from .outputs import NPZ_FORMATS
from .vmc import VmcTarget, parse_target

ROOT = Path(__file__).resolve().parent.parent
DEMO_CHECKPOINT = ROOT / "assets" / "models" / "demo_mobilenetv3.pt"
REALFOOTAGE_DIR = ROOT / "assets" / "models" / "realfootage"
MODELS = ("realfootage", "demo")
DEFAULT_LANDMARKS = "mixed"
DEFAULT_DETECT_EVERY = 2  # on its own thread (DEFAULT_DETECT_LAG): recall 0.81 on hand-boxed video; every 4th: 0.79
DEFAULT_LANDMARK_BUDGET = 2.0  # landmark crops per frame on average: what keeps 5+ people live on 2 CPU cores
DEFAULT_DETECT_LAG = 2  # frames a background detector pass has (it runs beside the landmark crops, on the other core)
DEFAULT_DETECT_SIZE = 512  # the detector's longest input side for frames over 768 px (see engine.realfootage.detector)
DEFAULT_FINE_SIZE = 1024  # the longest side of its fine pass, for frames over 1123 px (see engine.realfootage.detector)
TRACKER_OPTIONS = "--landmarks, --detect-every, --detect-lag, --detect-size, --fine-size and --landmark-budget"
DEMO_DIR = ROOT / "assets" / "demo"
# OpenCV reads an index >= 100 as backend*100 + camera (200 = camera 0 through V4L2), so a few thousand is the most
# that can mean anything; past 2**31 cv2 fails with an overload traceback
MAX_CAMERA = 9999
MIN_CAMERA_SIDE, MAX_CAMERA_SIDE = 16, 7680  # --camera-size bounds (an 8K sensor's width)


@dataclass(frozen=True)
class CaptureCfg:
    """Read by the capture stage (:func:`app.session.open_input` and the capture thread): which source to open and
    when to stop reading it. ``check_outputs`` reads ``input`` too, so no output overwrites an input file.

    camera: webcam index (None: camera 0 when there is no ``input`` either). input: an image, folder, video or
    stream URL. max_frames: stop after this many frames (0 = all). camera_size: (width, height) to ask the webcam
    for (None: whatever it gives by default, often 640x480).
    """

    camera: int | None
    input: str | None
    max_frames: int
    camera_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class ModelChoiceCfg:
    """Read when the model is opened (:func:`app.session.open_model`) and by the model stage's person filter: which
    people model and body model run, and which people they report.

    name: "realfootage", "demo" or "instancehmr" (a ``--checkpoint`` file, whose system is told when it is opened).
    checkpoint: that file (the bundled one for "demo"; None for "realfootage"). landmarks, detect_every,
    landmark_budget, detect_lag, detect_size, fine_size: the real-footage tracker's options (3DCrowdNet/JOTR
    checkpoints use the same tracker).
    threshold (None: the model's own tuned value) and max_people are only the starting values of the live
    :class:`~app.types.LiveSettings`, which the window changes while running.
    """

    name: str
    checkpoint: Path | None
    landmarks: str
    detect_every: int
    landmark_budget: float
    detect_lag: int
    detect_size: int
    fine_size: int
    body_model: str
    smpl_dir: Path | None
    threshold: float | None
    max_people: int


@dataclass(frozen=True)
class RuntimeCfg:
    """Read by the inference runtime when the model is opened: how it runs, never what it computes.

    backend: ``engine.runtime.formats.BACKENDS`` ("auto" picks the fastest). device: "auto", "cpu" or "cuda[:N]",
    already normalised by ``engine.runtime.device.parse_device``. threads: inference threads, at most the usable
    cores (``build_cfg`` refuses more rather than clamping, see :func:`usable_cores`).
    """

    backend: str
    device: str
    threads: int


@dataclass(frozen=True)
class RenderCfg:
    """Read by the render stage and the window: what is drawn and how, and the smoothing of what is drawn.

    smooth, smooth_strength, opacity and show_mesh/show_skeleton/show_centers are the starting values of the live
    :class:`~app.types.LiveSettings` (the window changes them while running; smoothing runs in the model stage but,
    like the overlays, only changes how motion looks). show_3d: the window opens with its 3D view shown.
    live_faces: the overlay mesh's face budget (exports keep full resolution).
    """

    smooth: bool
    smooth_strength: float
    opacity: float
    show_mesh: bool
    show_skeleton: bool
    show_centers: bool
    show_3d: bool
    live_faces: int


@dataclass(frozen=True)
class OutputsCfg:
    """Read by :func:`app.session.check_outputs` (every path checked writable before the model loads) and by the
    sinks it then builds: what the run writes or streams. None switches an output off.

    The command-line outputs (record, save_npz, export_mesh, export_anim) name files for this run only; the window's
    later sessions drop them (:mod:`app.window_services`). out_dir is where the window's R and S keys write
    (``<out_dir>/recordings``, ``<out_dir>/screenshots``). vmc/vmc_track: the live VMC link and its performer.
    """

    record: Path | None
    save_npz: Path | None
    save_verts: bool
    npz_format: str
    export_mesh: Path | None
    mesh_format: str
    mesh_space: str
    export_anim: Path | None
    out_dir: Path
    vmc: VmcTarget | None
    vmc_track: int | None


@dataclass(frozen=True)
class AppCfg:
    """The whole run's configuration, built and validated once by :func:`build_cfg`; each stage reads its own group.

    headless (no window), quit_at_end (the window closes when the input ends) and debug (tracebacks, debug logs,
    FFmpeg's own log) choose how the app runs as a whole, so they sit at the top.
    """

    capture: CaptureCfg
    model: ModelChoiceCfg
    runtime: RuntimeCfg
    render: RenderCfg
    outputs: OutputsCfg
    headless: bool
    debug: bool
    quit_at_end: bool = False

    def changed(self, **groups: dict[str, object]) -> AppCfg:
        """A copy with fields replaced inside the named groups, e.g. ``cfg.changed(runtime={"device": "cuda"})``
        (the tree is frozen; the window's later sessions and tests derive configs this way). Not re-validated."""
        return replace(self, **{g: replace(getattr(self, g), **fields) for g, fields in groups.items()})


def tracker_options_given(mc: ModelChoiceCfg) -> bool:
    """Whether any landmark-tracker option differs from its default (they mean nothing to InstanceHMR)."""
    return (mc.landmarks, mc.detect_every, mc.landmark_budget, mc.detect_lag, mc.detect_size, mc.fine_size) != (
        DEFAULT_LANDMARKS, DEFAULT_DETECT_EVERY, DEFAULT_LANDMARK_BUDGET, DEFAULT_DETECT_LAG, DEFAULT_DETECT_SIZE,
        DEFAULT_FINE_SIZE)


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes end like every other failure: one ``error:`` line and exit code 2 (a ConfigError), instead of
    argparse's 16-line usage dump before a ``run_app.py: error:`` line."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(f"{message}; see --help")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="run_app.py",
        description="Real-time multi-person 3D human meshes. With no arguments, opens camera 0 with the "
                    "real-footage model.",
        epilog="Examples: run_app.py --camera 0 | run_app.py --input clip.mp4 --record out.mp4 | "
               "run_app.py --input photos/ --save-npz results/ --headless")
    src = p.add_argument_group("input")
    src.add_argument("--camera", type=int, metavar="N", help="webcam index (default when no --input: 0)")
    src.add_argument("--input", metavar="PATH|URL", help="image, folder of images, video file or RTSP/HTTP stream")
    src.add_argument("--camera-size", metavar="WxH",
                     help="ask the webcam for this size, e.g. 1280x720 (default: the camera's own, often 640x480, "
                          "where the detector finds fewer of a group's people)")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=MODELS, default=None,
                   help="realfootage (default): real-trained person detector + BlazePose landmarks + body fit; "
                        "demo: the bundled InstanceHMR model trained on synthetic renders only")
    m.add_argument("--checkpoint", type=Path, default=None,
                   help="official weights (.pt/.pth/.pkl, or an exported .onnx/.engine) of InstanceHMR, "
                        "3DCrowdNet or JOTR: the system is told from the file")
    m.add_argument("--landmarks", choices=("full", "lite", "mixed"), default=None,
                   help=f"realfootage: BlazePose landmark network (default {DEFAULT_LANDMARKS}; lite is faster, "
                        "full is more precise, mixed lets full find people and lite follow them)")
    m.add_argument("--detect-every", type=int, default=None, metavar="N",
                   help=f"realfootage: look for new people every N frames while people are tracked (default "
                        f"{DEFAULT_DETECT_EVERY})")
    m.add_argument("--landmark-budget", type=float, default=None, metavar="N",
                   help=f"realfootage: landmark crops per frame on average (newcomers included); tracked people are "
                        f"measured stalest first, the others move on at their own speed with their last pose until "
                        f"their turn (default {DEFAULT_LANDMARK_BUDGET:g}; 0 = everyone on every frame: the most "
                        f"precise, slowest)")
    m.add_argument("--detect-lag", type=int, default=None, metavar="N",
                   help=f"realfootage: run the person detector on a thread of its own (the other CPU core) and take "
                        f"its people in N frames later (default {DEFAULT_DETECT_LAG}; 0 = on the model thread, on the "
                        f"frame it looks at)")
    m.add_argument("--detect-size", type=int, default=None, metavar="N",
                   help=f"realfootage: the person detector's longest input side for frames larger than 768 px, which "
                        f"get a larger input so that small people stay findable (default {DEFAULT_DETECT_SIZE}; 416 = "
                        f"every frame at the trained size, fastest on HD; 640 finds a few more small people; a "
                        f"multiple of 32)")
    m.add_argument("--fine-size", type=int, default=None, metavar="N",
                   help=f"realfootage: the longest input side of the person detector's second, finer pass over "
                        f"frames larger than 1123 px (1280x720 and up), which finds people too small for the first "
                        f"pass, a crowd seen from afar (default {DEFAULT_FINE_SIZE}; 0 = no fine pass: fastest on "
                        f"HD, misses many people under about a tenth of the frame's height; a multiple of 32)")
    m.add_argument("--body-model", choices=("anny", "smpl"), default="anny",
                   help="mesh model: anny (free, bundled) or smpl (needs --smpl-dir)")
    m.add_argument("--smpl-dir", type=Path, help="folder or file with SMPL_NEUTRAL.pkl/.npz (for --body-model smpl)")
    m.add_argument("--backend", choices=BACKENDS, default="auto", help="inference backend (auto picks the fastest)")
    m.add_argument("--device", default="auto", metavar="DEVICE",
                   help=f"inference device: {DEVICE_CHOICES_HELP} (auto: TensorRT, then ONNX Runtime CUDA, then torch "
                        "CUDA, then the CPU; cpu never touches CUDA)")
    m.add_argument("--threads", type=int, default=None,
                   help="inference threads per network, at most the usable CPU cores (default: 2 for the realfootage "
                        "model's networks, whose idle workers sleep while the other stages run, its background "
                        "detector at most 1; 1 otherwise, which leaves a core for capture/render/encode)")
    m.add_argument("--threshold", type=float, default=None,
                   help="person score threshold (default: the model's own: realfootage 0.35 with full landmarks, "
                        "0.45 with lite; InstanceHMR 0.2)")
    m.add_argument("--max-people", type=int, default=64, help="most people per frame (default 64, as official)")
    m.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                   help="One-Euro smoothing of pose, shape and camera per person (default on)")
    m.add_argument("--smooth-strength", type=float, default=1.0, help="1 = default, >1 smoother, <1 snappier")
    o = p.add_argument_group("outputs")
    o.add_argument("--record", type=Path, metavar="OUT.mp4",
                   help="write the annotated video (H.264 .mp4/.m4v/.mov/.mkv, MPEG-4 .avi); .mp4 stays playable "
                        "even if the run is killed")
    o.add_argument("--save-npz", type=Path, metavar="DIR", help="write <stem>.npz results into this folder")
    o.add_argument("--save-verts", action="store_true", help="also store mesh vertices in the .npz")
    o.add_argument("--npz-format", choices=NPZ_FORMATS, default="flat",
                   help="flat: plain arrays, one row per person (default); romp: simple-romp's pickled 'results' "
                        "layout, for its readers (np.load(f, allow_pickle=True)['results'][()])")
    o.add_argument("--export-mesh", type=Path, metavar="DIR", help="write a mesh file per frame and person")
    o.add_argument("--mesh-format", choices=MESH_FORMATS, default="obj", help="--export-mesh format (default obj)")
    o.add_argument("--mesh-space", choices=MESH_SPACES, default="world",
                   help="--export-mesh axes: world = y up, camera at the origin looking down -z (default; imports "
                        "upright in Blender); camera = x right, y down, z forward (OBJ/PLY only; GLB is always y up)")
    o.add_argument("--export-anim", type=Path, metavar="DIR",
                   help="write <stem>_id<track>.bvh per tracked person and <stem>.glb (all tracks: skinned, "
                        "animated) when the run ends")
    o.add_argument("--headless", action="store_true", help="no window: process the input to the outputs and exit")
    o.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = all)")
    o.add_argument("--vmc", nargs="?", const="", default=None, metavar="HOST:PORT",
                   help="stream the performer's skeleton live over the VMC protocol (OSC/UDP) to HOST:PORT; "
                        "HOST, :PORT or nothing use the defaults 127.0.0.1:39539")
    o.add_argument("--vmc-track", type=int, default=None, metavar="ID",
                   help="--vmc performer: this track id (default: the person largest on screen, kept while "
                        "tracked)")
    v = p.add_argument_group("view")
    v.add_argument("--opacity", type=float, default=0.8, help="mesh opacity over the video, 0..1")
    v.add_argument("--no-mesh", dest="show_mesh", action="store_false", help="do not draw meshes")
    v.add_argument("--skeleton", action="store_true", help="draw 2D skeletons")
    v.add_argument("--centers", action="store_true", help="draw body centres with track IDs")
    v.add_argument("--no-3d", dest="show_3d", action="store_false", help="start with the 3D view hidden")
    v.add_argument("--live-faces", type=int, default=1600,
                   help="face budget of the live overlay mesh (lower = faster; exports keep full resolution)")
    v.add_argument("--quit-at-end", action="store_true", help="close the window when the input ends")
    v.add_argument("--out-dir", type=Path, default=Path(), metavar="DIR",
                   help="window: R records into DIR/recordings/, S saves frames into DIR/screenshots/ (default: the "
                        "current folder); the status bar shows each file's full path")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return p


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow), not the machine's.

    --threads above it is refused rather than clamped: oversubscribed inference threads did not fail, they made a
    run look hung (``--threads 1000``: 69 s to load, 45 s a frame), and silently running with another value than
    asked would hide that from benchmarks.
    """
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def default_threads(model: str, cores: int) -> int:
    """Inference threads per network when ``--threads`` is not given.

    The real-footage model runs many small landmark crops on the model thread and the person detector on a thread
    of its own; with two intra-op threads each (workers that sleep, never spin, between ops: see
    :func:`engine.runtime.graph.create_session`) a crop also uses the other core while render and encode leave it
    idle: 11 % more FPS end to end on 2 cores with ~6 people (median of three interleaved runs, 19.7 -> 21.9).
    The InstanceHMR and 2D-pose-guided networks keep 1, as measured for them. A detector that runs beside the
    landmark crops takes at most one of them (see ``engine.frame_models.BACKGROUND_DETECTOR_THREADS``).
    """
    return min(2, cores) if model == "realfootage" else 1


def display_available() -> bool:
    if sys.platform != "linux":
        return True
    qpa = os.environ.get("QT_QPA_PLATFORM", "")
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or qpa.startswith(("offscreen",
                                                                                                 "vnc", "eglfs")))


def _camera_size(value: str | None, source: str | None) -> tuple[int, int] | None:
    """``--camera-size WxH`` as (width, height), or None when not given."""
    if value is None:
        return None
    if source is not None:
        raise ConfigError("--camera-size applies to a webcam (--camera N), not to --input")
    found = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", value)
    size = (int(found[1]), int(found[2])) if found else None
    if size is None or not all(MIN_CAMERA_SIDE <= v <= MAX_CAMERA_SIDE for v in size):
        raise ConfigError(f"--camera-size must be WIDTHxHEIGHT with sides in {MIN_CAMERA_SIDE}..{MAX_CAMERA_SIDE}, "
                          f"e.g. 1280x720; got {value!r}")
    return size


def build_cfg(args: argparse.Namespace) -> AppCfg:
    """The one place the parsed options become the config tree: every contradiction is refused here with one
    ConfigError line (never silently rewritten), so the stages that read a group can trust it unchecked."""
    if args.camera is not None and args.input is not None:
        raise ConfigError("pass either --camera or --input, not both")
    if args.input is not None and not args.input.strip():  # Path("") is ".", which was then read as a folder
        raise ConfigError("--input is empty; pass an image, a folder of images, a video or a stream URL")
    if args.camera is not None and not 0 <= args.camera <= MAX_CAMERA:
        raise ConfigError(f"--camera must be a camera index in 0..{MAX_CAMERA} (usually 0), got {args.camera}")
    camera_size = _camera_size(args.camera_size, args.input)
    if args.checkpoint is not None and args.model is not None:
        raise ConfigError(f"pass either --model {args.model} or --checkpoint, not both (a checkpoint runs its own "
                          "system)")
    model = "instancehmr" if args.checkpoint is not None else (args.model or "realfootage")
    checkpoint = DEMO_CHECKPOINT if model == "demo" else args.checkpoint
    if model == "demo" and any(getattr(args, k) is not None for k in
                               ("landmarks", "detect_every", "landmark_budget", "detect_lag", "detect_size",
                                "fine_size")):
        raise ConfigError(f"{TRACKER_OPTIONS} apply to the realfootage model and to 3DCrowdNet/JOTR checkpoints (their "
                          "2D poses come from the same tracker), not to the demo model")
    detect_every = DEFAULT_DETECT_EVERY if args.detect_every is None else args.detect_every
    budget = DEFAULT_LANDMARK_BUDGET if args.landmark_budget is None else args.landmark_budget
    lag = DEFAULT_DETECT_LAG if args.detect_lag is None else args.detect_lag
    detect_size = DEFAULT_DETECT_SIZE if args.detect_size is None else args.detect_size
    fine_size = DEFAULT_FINE_SIZE if args.fine_size is None else args.fine_size
    if model == "realfootage" and args.backend not in ("auto", "onnxruntime"):
        raise ConfigError(f"the realfootage model runs on ONNX Runtime (CPU, or CUDA with onnxruntime-gpu), not "
                          f"{args.backend}; use --backend auto, or --checkpoint for an InstanceHMR model")
    cores = usable_cores()
    threads = default_threads(model, cores) if args.threads is None else args.threads
    checks = [(args.threshold is None or 0.0 <= args.threshold <= 1.0,
               f"--threshold must be in [0, 1], got {args.threshold}"),
              (1 <= detect_every <= 1000, f"--detect-every must be in 1..1000, got {detect_every}"),
              (0 <= budget <= 64, f"--landmark-budget must be in 0..64 (0 = every person), got {budget:g}"),
              (0 <= lag <= 100, f"--detect-lag must be in 0..100 (0 = no detector thread), got {lag}"),
              (416 <= detect_size <= 1536 and detect_size % 32 == 0,
               f"--detect-size must be a multiple of 32 in 416..1536, got {detect_size}"),
              (fine_size == 0 or (416 <= fine_size <= 2048 and fine_size % 32 == 0),
               f"--fine-size must be 0 (no fine pass) or a multiple of 32 in 416..2048, got {fine_size}"),
              (0.0 <= args.opacity <= 1.0, f"--opacity must be in [0, 1], got {args.opacity}"),
              (args.smooth_strength > 0, f"--smooth-strength must be > 0, got {args.smooth_strength}"),
              (1 <= args.max_people <= 64, f"--max-people must be in 1..64, got {args.max_people}"),
              (args.max_frames >= 0, f"--max-frames must be >= 0, got {args.max_frames}"),
              (args.live_faces >= 100, f"--live-faces must be >= 100, got {args.live_faces}"),
              (1 <= threads <= cores,
               f"--threads must be in 1..{cores} (the CPU cores this process may use), got {threads}")]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)
    vmc = None if args.vmc is None else parse_target(args.vmc)
    if args.vmc_track is not None and (vmc is None or args.vmc_track < 0):
        raise ConfigError("--vmc-track needs --vmc" if vmc is None else
                          f"--vmc-track must be a track id >= 0, got {args.vmc_track}")
    if args.save_verts and args.save_npz is None:
        raise ConfigError("--save-verts needs --save-npz DIR")
    if args.npz_format != "flat" and args.save_npz is None:
        raise ConfigError("--npz-format needs --save-npz DIR")
    if args.mesh_space != "world" and args.export_mesh is None:
        raise ConfigError("--mesh-space needs --export-mesh DIR")
    if args.body_model == "smpl" and args.smpl_dir is None:
        raise ConfigError("--body-model smpl needs --smpl-dir (folder with SMPL_NEUTRAL.pkl or .npz; SMPL files are "
                          "a licensed download from smpl.is.tue.mpg.de)")
    if args.body_model == "anny" and args.smpl_dir is not None:
        raise ConfigError("--smpl-dir is only used with --body-model smpl")
    if args.headless and args.camera is None and args.input is None:
        raise ConfigError("--headless needs --input PATH (or --camera N with --record/--save-npz and --max-frames)")
    if args.headless and not (args.record or args.save_npz or args.export_mesh):
        pass  # allowed: a dry run that prints timings
    if not args.headless and not display_available():
        raise ConfigError("no display available (DISPLAY is not set); add --headless to process to files, or run "
                          "under xvfb-run")
    return AppCfg(
        capture=CaptureCfg(camera=args.camera, input=args.input, max_frames=args.max_frames, camera_size=camera_size),
        model=ModelChoiceCfg(name=model, checkpoint=checkpoint, landmarks=args.landmarks or DEFAULT_LANDMARKS,
                             detect_every=detect_every, landmark_budget=budget, detect_lag=lag,
                             detect_size=detect_size, fine_size=fine_size,
                             body_model=args.body_model,
                             smpl_dir=args.smpl_dir,
                             threshold=args.threshold, max_people=args.max_people),
        runtime=RuntimeCfg(backend=args.backend, device=str(parse_device(args.device)), threads=threads),
        render=RenderCfg(smooth=args.smooth, smooth_strength=args.smooth_strength, opacity=args.opacity,
                         show_mesh=args.show_mesh, show_skeleton=args.skeleton, show_centers=args.centers,
                         show_3d=args.show_3d, live_faces=args.live_faces),
        outputs=OutputsCfg(record=args.record, save_npz=args.save_npz, save_verts=args.save_verts,
                           npz_format=args.npz_format, export_mesh=args.export_mesh, mesh_format=args.mesh_format,
                           mesh_space=args.mesh_space, export_anim=args.export_anim, out_dir=args.out_dir, vmc=vmc,
                           vmc_track=args.vmc_track),
        headless=args.headless, debug=args.debug, quit_at_end=args.quit_at_end)
